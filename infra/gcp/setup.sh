#!/usr/bin/env bash
# The Google Cloud side of an xcr deployment (infra/DEPLOY.md, step 2):
#   - the destination bucket (uniform bucket-level access);
#   - a service account with roles/storage.objectAdmin on that bucket only;
#   - a Workload Identity Federation pool and AWS provider that accept only
#     the xcr Lambda roles of one AWS account (<prefix>-{replicate,api,migrate}-<region>);
#   - the binding that lets those roles impersonate the service account;
#   - the credential configuration file (no secret inside) that
#     `scripts/deploy.py aws --gcp-credentials FILE` passes to the functions.
#
# Usage (re-running is safe: existing resources are kept, bindings re-applied):
#   GCP_PROJECT=my-project GCS_BUCKET=my-replica AWS_ACCOUNT_ID=123456789012 AWS_REGION=eu-west-1 \
#     infra/gcp/setup.sh
# Optional: GCS_LOCATION (default US), XCR_PREFIX (default xcr; the stack's Prefix),
#   WIF_POOL (xcr-pool), WIF_PROVIDER (aws), GCP_SA_NAME (xcr-replicator),
#   CRED_CONFIG (infra/gcp/xcr-wif.json).
set -euo pipefail

die() { echo "setup.sh: $*" >&2; exit 1; }
need() { [[ -n "${!1:-}" ]] || die "set $1 (see the header of $0)"; }

need GCP_PROJECT
need GCS_BUCKET
need AWS_ACCOUNT_ID
need AWS_REGION
[[ "$AWS_ACCOUNT_ID" =~ ^[0-9]{12}$ ]] || die "AWS_ACCOUNT_ID must be 12 digits, got '$AWS_ACCOUNT_ID'"
command -v gcloud >/dev/null || die "gcloud not found: install the Google Cloud CLI and run 'gcloud auth login'"

location="${GCS_LOCATION:-US}"
prefix="${XCR_PREFIX:-xcr}"
pool="${WIF_POOL:-xcr-pool}"
provider="${WIF_PROVIDER:-aws}"
sa_name="${GCP_SA_NAME:-xcr-replicator}"
out="${CRED_CONFIG:-$(cd "$(dirname "$0")" && pwd)/xcr-wif.json}"

gc=(gcloud --project "$GCP_PROJECT" --quiet)
project_number="$("${gc[@]}" projects describe "$GCP_PROJECT" --format='value(projectNumber)')"
sa="${sa_name}@${GCP_PROJECT}.iam.gserviceaccount.com"
pool_path="projects/${project_number}/locations/global/workloadIdentityPools/${pool}"
# The Lambda roles are named by the template: <Prefix>-<function>-<region>.
roles=("${prefix}-replicate-${AWS_REGION}" "${prefix}-api-${AWS_REGION}" "${prefix}-migrate-${AWS_REGION}")

step() { printf '\n== %s\n' "$*"; }

step "APIs"
"${gc[@]}" services enable iam.googleapis.com iamcredentials.googleapis.com sts.googleapis.com storage.googleapis.com

step "bucket gs://$GCS_BUCKET"
if "${gc[@]}" storage buckets describe "gs://$GCS_BUCKET" --format='value(name)' >/dev/null 2>&1; then
  echo "exists"
else
  "${gc[@]}" storage buckets create "gs://$GCS_BUCKET" --location "$location" --uniform-bucket-level-access
fi

step "service account $sa"
if "${gc[@]}" iam service-accounts describe "$sa" >/dev/null 2>&1; then
  echo "exists"
else
  "${gc[@]}" iam service-accounts create "$sa_name" --display-name "xcr S3 -> GCS replication"
fi

# objectAdmin, on this bucket only: xcr creates objects, overwrites them
# (which needs storage.objects.delete), deletes a copy that failed
# verification and, when XCR_REPLICATE_DELETES=true, replicates deletes.
# objectCreator + objectViewer cannot overwrite or delete. No project-wide role.
step "roles/storage.objectAdmin on gs://$GCS_BUCKET for $sa"
"${gc[@]}" storage buckets add-iam-policy-binding "gs://$GCS_BUCKET" \
  --member "serviceAccount:$sa" --role roles/storage.objectAdmin --format='value(etag)' >/dev/null

step "workload identity pool $pool"
if "${gc[@]}" iam workload-identity-pools describe "$pool" --location global >/dev/null 2>&1; then
  echo "exists"
else
  "${gc[@]}" iam workload-identity-pools create "$pool" --location global --display-name "xcr (AWS Lambda)"
fi

# google.subject: the caller's ARN. attribute.aws_role: the assumed role
# without its session name (Google's documented mapping for AWS).
mapping="google.subject=assertion.arn,attribute.aws_account=assertion.account,attribute.aws_role=assertion.arn.contains('assumed-role') ? assertion.arn.extract('{account_arn}assumed-role/') + 'assumed-role/' + assertion.arn.extract('assumed-role/{role_name}/') : assertion.arn"
role_arns=()
for role in "${roles[@]}"; do role_arns+=("'arn:aws:sts::${AWS_ACCOUNT_ID}:assumed-role/${role}'"); done
condition="attribute.aws_role in [$(IFS=,; echo "${role_arns[*]}")]"

step "AWS provider $provider (account $AWS_ACCOUNT_ID, roles ${roles[*]})"
if "${gc[@]}" iam workload-identity-pools providers describe "$provider" \
     --workload-identity-pool "$pool" --location global >/dev/null 2>&1; then
  "${gc[@]}" iam workload-identity-pools providers update-aws "$provider" \
    --workload-identity-pool "$pool" --location global \
    --attribute-mapping "$mapping" --attribute-condition "$condition"
else
  "${gc[@]}" iam workload-identity-pools providers create-aws "$provider" \
    --workload-identity-pool "$pool" --location global --account-id "$AWS_ACCOUNT_ID" \
    --attribute-mapping "$mapping" --attribute-condition "$condition"
fi

step "let the Lambda roles impersonate $sa"
for role in "${roles[@]}"; do
  member="principalSet://iam.googleapis.com/${pool_path}/attribute.aws_role/arn:aws:sts::${AWS_ACCOUNT_ID}:assumed-role/${role}"
  "${gc[@]}" iam service-accounts add-iam-policy-binding "$sa" \
    --role roles/iam.workloadIdentityUser --member "$member" --format='value(etag)' >/dev/null
  echo "  $role"
done

step "credential configuration -> $out"
"${gc[@]}" iam workload-identity-pools create-cred-config "${pool_path}/providers/${provider}" \
  --service-account "$sa" --aws --output-file "$out"

cat <<DONE

Done. Deploy with:
  make deploy DEPLOY_ARGS="--region $AWS_REGION --param Prefix=$prefix --param DestBucket=$GCS_BUCKET --gcp-credentials $out"
The file holds no secret (an audience, token URLs and the service account to impersonate).
DONE
