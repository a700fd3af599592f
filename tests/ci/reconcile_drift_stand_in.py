"""Stand-in for ``reconcile`` while the CLI has no ``plan --drift-only``: the real CLI, minus that flag.

Used by the drift tests only when ``reconcile plan --help`` does not list ``--drift-only``. It keeps the contract
the action relies on (exit 0 no drift, 2 drift, 1 error) for the scenario those tests build: the manifests are
applied and then left alone, so every change a plan shows afterwards was made on the server behind the tool's
back, which is exactly what drift is. Every other command line goes to the real CLI unchanged.
"""

import sys

from reconciler.cli import main

if __name__ == "__main__":
    sys.argv = [sys.argv[0], *(a for a in sys.argv[1:] if a != "--drift-only")]
    main()
