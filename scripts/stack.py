#!/usr/bin/env python3
"""Run xcr's local stack without Docker: moto (AWS) + gcp-storage-emulator (GCS).

    .venv/bin/python scripts/stack.py up     --dir DIR [--dest-bucket NAME]
    .venv/bin/python scripts/stack.py down   --dir DIR
    .venv/bin/python scripts/stack.py status --dir DIR
    .venv/bin/python scripts/stack.py env    --dir DIR [--export]

`up` starts both emulators on free loopback ports, deploys infra/template.yaml
to moto's CloudFormation, creates the GCS destination bucket and writes
DIR/local.env: KEY=VALUE lines that point xcr (or any AWS/GCS client) at the
stack. Everything about one stack lives in DIR (pids.json, logs/, local.env),
so any number of stacks can run side by side, e.g. one per integration test.

Why the template is also read here: moto's CloudFormation reaches
CREATE_COMPLETE but silently drops parts of it (S3 NotificationConfiguration
and VersioningConfiguration, SQS queue policies and RedriveAllowPolicy,
DynamoDB TTL and point-in-time recovery, S3 public access blocks, CloudWatch
alarms...). `up` therefore parses the same template, resolves its intrinsic
functions against the deployed stack and applies those properties with
ordinary API calls (xcrlocal/deployer.py, APPLIERS). There is no second, hand-kept list of
resources: add a resource to the template and it is deployed and reconciled
here too. The template's `Rules` and parameter constraints, which moto ignores,
are checked before anything is created (xcrlocal/template.py, check_rules).

The local stack deploys the template with DeployFunctions=false (the data
plane only: moto runs no Lambda code without Docker; `xcr pump` plays the
event source mapping). scripts/deploy.py uses the same Deployer for
LocalStack and any other endpoint (`make deploy-local`).

The code is the package beside this file, scripts/xcrlocal/ (supervise,
template, deployer, env, cli: see its __init__); this file is only the
entry point, and its command line is the contract (xcrlocal/cli.py).

Exit codes: 0 success; 1 an expected failure, explained on stderr without a
traceback; 2 bad usage; 3 `status` found the stack not (fully) running.

Only the standard library is needed for `down`, `status` and `env`, so that
teardown stays fast and works even from a broken virtualenv; `up` also needs
boto3 and PyYAML (requirements.txt).
"""

import sys

from xcrlocal.cli import main

if __name__ == "__main__":
    sys.exit(main())
