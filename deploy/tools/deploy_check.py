#!/usr/bin/env python3
"""keysync's deployment checks: the entry point `make deploy-lint`, `make images` and
`make deploy-check` call (`lint`, `images`, `repro`, `pod`, `rotation`, `all-heavy`).

The checks live in the deploy_check package beside this script, one module a concern;
deploy_check/cli.py holds the command line and says what each command checks.
"""
import sys

# The package deploy_check/ beside this script, not this file: Python finds a package
# folder before a module of the same name.
from deploy_check.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv))
