"""Creates and finalizes a one-file dataset; prints its id.  argv: <tree>"""

import sys

from _common import emit, new_version

emit({"id": new_version("bad", "final", "1.0.0", sys.argv[1]).id})
