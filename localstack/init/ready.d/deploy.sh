#!/usr/bin/env bash
# LocalStack ready.d hook: deploy xcr's data plane from infra/template.yaml
# with the same code as the tested no-Docker path (scripts/deploy.py local,
# which also applies what an emulator's CloudFormation ignores), create the
# GCS destination bucket in fake-gcs-server, and write a local.env in
# scripts/stack.py's format with the endpoints as seen from the host.
#
# Runs inside the LocalStack container (docker-compose.yml mounts infra/ and
# scripts/ at /opt/xcr). The same deploy from the host, against a running
# LocalStack:
#   make deploy-local AWS_ENDPOINT_URL=http://localhost:4566 STORAGE_EMULATOR_HOST=http://localhost:4443
set -euo pipefail

xcr="${XCR_HOME:-/opt/xcr}"
env_out="${XCR_ENV_OUT:-$xcr/out/local.env}"
rm -f "$env_out"  # an env file must always describe the stack now running

# deploy.py needs boto3 and PyYAML: LocalStack's own virtualenv has both.
python=""
for candidate in /opt/code/localstack/.venv/bin/python python3; do
  if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import boto3, yaml' 2>/dev/null; then
    python="$candidate"
    break
  fi
done
if [[ -z "$python" ]]; then
  echo "xcr: no python with boto3 and PyYAML in this image; deploy from the host instead:" >&2
  echo "  make deploy-local AWS_ENDPOINT_URL=http://localhost:4566 STORAGE_EMULATOR_HOST=http://localhost:4443" >&2
  exit 1
fi

exec "$python" "$xcr/scripts/deploy.py" local \
  --endpoint "${XCR_AWS_URL:-http://localhost:4566}" \
  --gcs-endpoint "${XCR_GCS_URL:-http://gcs:4443}" \
  --public-gcs-endpoint "${XCR_PUBLIC_GCS_URL:-http://localhost:4443}" \
  --dest-bucket "${XCR_DEST_BUCKET:-xcr-dest}" \
  --env-out "$env_out"
