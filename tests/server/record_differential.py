"""Records the reference server's answers to the differential catalogue into ``data/differential-reference.json``.

    python tests/server/record_differential.py            # the reference server of env.sh / the environment
    python tests/server/record_differential.py --check    # compare with the recording, write nothing

The server is found as the tests find it (see :func:`differential.reference_target`); with nothing set, the
reference server's ``env.sh`` is used. Each run works in fresh projects named ``catalogue-<random>/<case>``.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from differential import (  # noqa: E402
    CASES,
    RECORDING,
    Client,
    differences,
    load_recording,
    new_suffix,
    reference_target,
    run_case,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the recording instead of writing it")
    parser.add_argument("--output", type=Path, default=RECORDING)
    args = parser.parse_args(argv)

    target = reference_target(requested=True)
    assert target is not None
    client = Client(target)
    server_info = client.send("server.info", body=b"{}")[1]["data"]
    suffix = new_suffix()
    try:
        answers = {case.name: run_case(client, case, suffix) for case in CASES}
    finally:
        client.close()

    if args.check:
        recorded = load_recording(args.output)
        problems = {name: differences(recorded[name], got) for name, got in answers.items()}
        problems = {name: found for name, found in problems.items() if found}
        for name, found in problems.items():
            print(f"{name}:\n  " + "\n  ".join(found))
        print(f"{len(CASES)} cases, {len(problems)} differ from the recording")
        return 1 if problems else 0

    doc = {
        "recorded": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "server": {key: server_info.get(key) for key in ("version", "api_version")},
        "cases": {name: [a.to_json() for a in got] for name, got in answers.items()},
    }
    args.output.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    refused = sum(1 for case in CASES if answers[case.name][case.under_test].status != 200)
    print(f"recorded {len(CASES)} cases ({refused} refused by the server) into {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
