"""Runs one Python-driven scenario in its own process (so a hang or crash is contained).
Usage: python3 scenario_main.py SCENARIO_ID BOOTSTRAP TRANSCRIPT_PATH
Exit 0: the scenario ran to its end; 1: a check failed or the client raised; 2: usage."""
import os
import sys
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import scenarios  # noqa: E402,F401  (registers every scenario)


def main():
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    sid, bootstrap, path = sys.argv[1:]
    fn = common.REGISTRY.get(sid)
    if fn is None:
        print(f"unknown scenario {sid}", file=sys.stderr)
        return 2
    t = common.Transcript(path, sid)
    try:
        fn(t, bootstrap)
        t.rec("end")
        return 0
    except common.CheckFailed as e:
        print(f"{sid}: check failed: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # the exception type is part of what a client observes
        t.rec("exception", type=type(e).__name__, msg=str(e))
        traceback.print_exc()
        return 1
    finally:
        t.close()


if __name__ == "__main__":
    sys.exit(main())
