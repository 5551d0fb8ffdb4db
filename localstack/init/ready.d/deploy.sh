#!/usr/bin/env bash
# LocalStack ready.d hook: deploy xcr's data plane from infra/template.yaml,
# create the GCS destination bucket, and write a local.env in the format of
# scripts/stack.py (endpoints as seen from the host).
#
# Runs inside the LocalStack container (awslocal available) when LocalStack is
# ready; also runnable from the host against a running LocalStack, with the
# AWS CLI: bash localstack/init/ready.d/deploy.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
template="${XCR_TEMPLATE:-$here/../../../infra/template.yaml}"
env_out="${XCR_ENV_OUT:-$here/../../../.xcr/localstack/local.env}"
stack="${XCR_STACK_NAME:-xcr}"
region="${AWS_DEFAULT_REGION:-us-east-1}"
dest_bucket="${XCR_DEST_BUCKET:-xcr-dest}"
gcs_url="${XCR_GCS_URL:-http://localhost:4443}"   # as reached from here
aws_host_url="${AWS_ENDPOINT_URL:-http://localhost:4566}"  # as reached from the host
gcs_host_url="http://localhost:4443"

if command -v awslocal >/dev/null 2>&1; then
  aws=(awslocal --region "$region")
else
  export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-test}" AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-test}"
  aws=(aws --endpoint-url "${AWS_ENDPOINT_URL:-$aws_host_url}" --region "$region")
fi

rm -f "$env_out"  # an env file must always describe the stack now running

echo "xcr: deploying $template as stack $stack"
"${aws[@]}" cloudformation deploy \
  --stack-name "$stack" \
  --template-file "$template" \
  --no-fail-on-empty-changeset

output() {
  local value
  value="$("${aws[@]}" cloudformation describe-stacks --stack-name "$stack" \
    --query "Stacks[0].Outputs[?OutputKey=='$1'].OutputValue" --output text)"
  if [[ -z "$value" || "$value" == "None" ]]; then
    echo "xcr: stack $stack has no output $1" >&2
    exit 1
  fi
  printf '%s' "$value"
}
source_bucket="$(output SourceBucketName)"
ledger_table="$(output LedgerTableName)"
jobs_table="$(output JobsTableName)"
queue_url="$(output ReplicateQueueUrl)"
dlq_url="$(output DLQUrl)"

echo "xcr: creating GCS bucket $dest_bucket at $gcs_url"
status="$(curl -s -o /dev/null -w '%{http_code}' -X POST \
  -H 'Content-Type: application/json' -d "{\"name\":\"$dest_bucket\"}" \
  "$gcs_url/storage/v1/b?project=local")"
case "$status" in
  200|409) ;;  # created, or already there
  *) echo "xcr: GCS emulator answered HTTP $status creating $dest_bucket" >&2; exit 1 ;;
esac

mkdir -p "$(dirname "$env_out")"
tmp="$env_out.tmp"
cat > "$tmp" <<ENV
# Written by localstack/init/ready.d/deploy.sh at $(date -u +%Y-%m-%dT%H:%M:%SZ) for LocalStack + fake-gcs-server.
# KEY=VALUE lines; load into a shell with: set -a; . ./local.env; set +a
AWS_ENDPOINT_URL=$aws_host_url
AWS_REGION=$region
AWS_DEFAULT_REGION=$region
AWS_ACCESS_KEY_ID=test
AWS_SECRET_ACCESS_KEY=test
STORAGE_EMULATOR_HOST=$gcs_host_url
XCR_SOURCE_BUCKET=$source_bucket
XCR_LEDGER_TABLE=$ledger_table
XCR_JOBS_TABLE=$jobs_table
XCR_QUEUE_URL=$queue_url
XCR_DLQ_URL=$dlq_url
XCR_DEST_BUCKET=$dest_bucket
ENV
mv "$tmp" "$env_out"
echo "xcr: stack ready; env written to $env_out"
cat "$env_out"
