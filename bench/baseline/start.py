"""Start Python, load the no-op handler, call it once and print its JSON.

This is the language's own cold start: what starting the function costs with no
platform around it. The benchmarks compare a platform's cold start with it.

Usage: python3 -S start.py [APP_PY]
"""

import importlib.util
import json
import os
import sys

DEFAULT_APP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "functions", "noop-python", "app.py")


def main():
    app = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_APP
    spec = importlib.util.spec_from_file_location("app", app)
    if spec is None or spec.loader is None:
        raise SystemExit(f"start.py: cannot load {app}: expected a Python file")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    print(json.dumps(module.handler({}, None)), flush=True)


if __name__ == "__main__":
    main()
