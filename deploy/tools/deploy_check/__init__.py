"""keysync's deployment checks, one module a concern; `cli` is the command line (see deploy_check.py)."""
