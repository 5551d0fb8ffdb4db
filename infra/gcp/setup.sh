#!/usr/bin/env bash
# The Google Cloud side of an xcr deployment (infra/DEPLOY.md, step 2):
#   - the destination bucket (uniform bucket-level access, public access
#     prevention enforced);
#   - a service account holding, on that bucket only, a custom role with
#     exactly the four permissions xcr uses (see "role" below);
#   - a Workload Identity Federation pool and AWS provider of this deployment
#     (named from the prefix and region, so a second deployment gets its own)
#     that accept only the xcr replicate and api Lambda roles;
#   - the binding that lets those two roles impersonate the service account
#     (the migrate function never calls GCS and gets no Google access);
#   - the credential configuration file (no secret inside) that
#     `scripts/deploy.py aws --gcp-credentials FILE` passes to the functions.
#
# Usage (re-running is safe: existing resources are kept, bindings re-applied,
# an existing provider's condition is merged with this deployment's roles,
# never replaced):
#   GCP_PROJECT=my-project GCS_BUCKET=my-replica AWS_ACCOUNT_ID=123456789012 AWS_REGION=eu-west-1 \
#     infra/gcp/setup.sh
# Optional: GCS_LOCATION (default US), XCR_PREFIX (default xcr; the stack's Prefix),
#   WIF_POOL (default <prefix>-<region>, shortened to 32 characters),
#   WIF_PROVIDER (default aws), GCP_SA_NAME (xcr-replicator),
#   GCP_ROLE_ID (xcrObjectReplicator), CRED_CONFIG (infra/gcp/xcr-wif.json),
#   AWS_PARTITION (default: from the caller's identity, `aws sts
#   get-caller-identity`, when the AWS CLI is configured; else from the region:
#   aws, aws-us-gov for us-gov-*, aws-cn for cn-*).
#   GCLOUD (the gcloud command; tests put a recorder there).
set -euo pipefail

die() { echo "setup.sh: $*" >&2; exit 1; }
need() { [[ -n "${!1:-}" ]] || die "set $1 (see the header of $0)"; }

need GCP_PROJECT
need GCS_BUCKET
need AWS_ACCOUNT_ID
need AWS_REGION
[[ "$AWS_ACCOUNT_ID" =~ ^[0-9]{12}$ ]] || die "AWS_ACCOUNT_ID must be 12 digits, got '$AWS_ACCOUNT_ID'"
gcloud_bin="${GCLOUD:-gcloud}"
command -v "$gcloud_bin" >/dev/null || die "gcloud not found: install the Google Cloud CLI and run 'gcloud auth login'"

location="${GCS_LOCATION:-US}"
prefix="${XCR_PREFIX:-xcr}"

# Workload identity pool ids: 4 to 32 lowercase letters, digits and hyphens,
# starting with a letter. <prefix>-<region> fits unless both are long; then
# its first 23 characters and 8 of its SHA-256 keep it unique.
short_id() {
  local id="$1"
  if (( ${#id} > 32 )); then
    id="${id:0:23}-$(printf '%s' "$1" | sha256sum | cut -c1-8)"
  fi
  printf '%s' "$id"
}
pool="${WIF_POOL:-$(short_id "${prefix}-${AWS_REGION}")}"
provider="${WIF_PROVIDER:-aws}"
sa_name="${GCP_SA_NAME:-xcr-replicator}"
role_id="${GCP_ROLE_ID:-xcrObjectReplicator}"
out="${CRED_CONFIG:-$(cd "$(dirname "$0")" && pwd)/xcr-wif.json}"

# The partition (arn:aws:, arn:aws-us-gov:, arn:aws-cn:) of the role ARNs the
# provider accepts: from the caller's own identity when the AWS CLI can tell,
# which also checks AWS_ACCOUNT_ID; otherwise from the region.
if [[ -z "${AWS_PARTITION:-}" ]]; then
  caller=""
  if command -v aws >/dev/null; then
    caller="$(aws sts get-caller-identity --region "$AWS_REGION" --query Arn --output text 2>/dev/null || true)"
  fi
  if [[ "$caller" =~ ^arn:([a-z-]+):[a-z]+::([0-9]{12}): ]]; then
    AWS_PARTITION="${BASH_REMATCH[1]}"
    [[ "${BASH_REMATCH[2]}" == "$AWS_ACCOUNT_ID" ]] \
      || die "the AWS CLI's caller is in account ${BASH_REMATCH[2]}, not AWS_ACCOUNT_ID=$AWS_ACCOUNT_ID"
  else
    case "$AWS_REGION" in
      us-gov-*) AWS_PARTITION=aws-us-gov ;;
      cn-*) AWS_PARTITION=aws-cn ;;
      *) AWS_PARTITION=aws ;;
    esac
  fi
fi
[[ "$AWS_PARTITION" =~ ^aws(-[a-z-]+)?$ ]] || die "AWS_PARTITION must look like aws, aws-us-gov or aws-cn, got '$AWS_PARTITION'"

gc=("$gcloud_bin" --project "$GCP_PROJECT" --quiet)
project_number="$("${gc[@]}" projects describe "$GCP_PROJECT" --format='value(projectNumber)')"
sa="${sa_name}@${GCP_PROJECT}.iam.gserviceaccount.com"
pool_path="projects/${project_number}/locations/global/workloadIdentityPools/${pool}"
# The Lambda roles are named by the template: <Prefix>-<function>-<region>.
# Only replicate and api write to GCS; migrate lists S3 and queues tasks.
roles=("${prefix}-replicate-${AWS_REGION}" "${prefix}-api-${AWS_REGION}")
role_arn() { printf 'arn:%s:sts::%s:assumed-role/%s' "$AWS_PARTITION" "$AWS_ACCOUNT_ID" "$1"; }

step() { printf '\n== %s\n' "$*"; }

step "APIs"
"${gc[@]}" services enable iam.googleapis.com iamcredentials.googleapis.com sts.googleapis.com storage.googleapis.com

step "bucket gs://$GCS_BUCKET"
if "${gc[@]}" storage buckets describe "gs://$GCS_BUCKET" --format='value(name)' >/dev/null 2>&1; then
  echo "exists: enforcing uniform access and public access prevention"
  "${gc[@]}" storage buckets update "gs://$GCS_BUCKET" --uniform-bucket-level-access --public-access-prevention
else
  "${gc[@]}" storage buckets create "gs://$GCS_BUCKET" --location "$location" \
    --uniform-bucket-level-access --public-access-prevention
fi

step "service account $sa"
if "${gc[@]}" iam service-accounts describe "$sa" >/dev/null 2>&1; then
  echo "exists"
else
  "${gc[@]}" iam service-accounts create "$sa_name" --display-name "xcr S3 -> GCS replication"
fi

# The role: exactly what xcr calls, granted on this bucket only.
#   storage.objects.create  uploads (single request and resumable sessions);
#   storage.objects.delete  an upload over an existing name is an overwrite,
#                           and GCS requires delete for it; also deletes
#                           mirrored with XCR_REPLICATE_DELETES=true and the
#                           removal of a copy that failed verification;
#   storage.objects.get     the generation and checksum of what GCS holds
#                           (preconditions, verification, already-replicated);
#   storage.objects.list    the health check's one-object listing.
# Not storage.objects.{getIamPolicy,setIamPolicy,update} nor any bucket or
# ACL permission, which roles/storage.objectAdmin would grant.
permissions="storage.objects.create,storage.objects.delete,storage.objects.get,storage.objects.list"
step "custom role $role_id ($permissions)"
if "${gc[@]}" iam roles describe "$role_id" >/dev/null 2>&1; then
  "${gc[@]}" iam roles update "$role_id" --permissions "$permissions" --stage GA >/dev/null
  echo "exists: permissions set"
else
  "${gc[@]}" iam roles create "$role_id" --title "xcr object replicator" \
    --description "Create, overwrite (delete), read and list objects of the xcr destination bucket" \
    --permissions "$permissions" --stage GA >/dev/null
fi

step "projects/$GCP_PROJECT/roles/$role_id on gs://$GCS_BUCKET for $sa"
"${gc[@]}" storage buckets add-iam-policy-binding "gs://$GCS_BUCKET" \
  --member "serviceAccount:$sa" --role "projects/$GCP_PROJECT/roles/$role_id" --format='value(etag)' >/dev/null
# An earlier version of this script granted objectAdmin: take it back.
"${gc[@]}" storage buckets remove-iam-policy-binding "gs://$GCS_BUCKET" \
  --member "serviceAccount:$sa" --role roles/storage.objectAdmin --format='value(etag)' >/dev/null 2>&1 || true

step "workload identity pool $pool"
if "${gc[@]}" iam workload-identity-pools describe "$pool" --location global >/dev/null 2>&1; then
  echo "exists"
else
  "${gc[@]}" iam workload-identity-pools create "$pool" --location global --display-name "xcr $prefix $AWS_REGION"
fi

# google.subject: the caller's ARN. attribute.aws_role: the assumed role
# without its session name (Google's documented mapping for AWS).
mapping="google.subject=assertion.arn,attribute.aws_account=assertion.account,attribute.aws_role=assertion.arn.contains('assumed-role') ? assertion.arn.extract('{account_arn}assumed-role/') + 'assumed-role/' + assertion.arn.extract('assumed-role/{role_name}/') : assertion.arn"
wanted=()
for role in "${roles[@]}"; do wanted+=("'$(role_arn "$role")'"); done

step "AWS provider $provider (account $AWS_ACCOUNT_ID, roles ${roles[*]})"
providers=(iam workload-identity-pools providers)
if "${gc[@]}" "${providers[@]}" describe "$provider" --workload-identity-pool "$pool" --location global >/dev/null 2>&1; then
  # Merged, never replaced: the pool may already serve another deployment
  # (WIF_POOL given), whose roles must keep their access.
  account="$("${gc[@]}" "${providers[@]}" describe "$provider" --workload-identity-pool "$pool" --location global \
    --format='value(aws.accountId)')"
  [[ "$account" == "$AWS_ACCOUNT_ID" ]] \
    || die "provider $provider of pool $pool trusts AWS account $account, not $AWS_ACCOUNT_ID: use another WIF_POOL"
  current="$("${gc[@]}" "${providers[@]}" describe "$provider" --workload-identity-pool "$pool" --location global \
    --format='value(attributeCondition)')"
  kept=()
  if [[ -n "$current" ]]; then
    mapfile -t kept < <(grep -o "'arn:[^']*'" <<<"$current" || true)
    (( ${#kept[@]} > 0 )) || die "provider $provider has a condition this script does not understand ($current): merge by hand"
  fi
  mapfile -t merged < <(printf '%s\n' "${kept[@]}" "${wanted[@]}" | sort -u)
  condition="attribute.aws_role in [$(IFS=,; echo "${merged[*]}")]"
  "${gc[@]}" "${providers[@]}" update-aws "$provider" --workload-identity-pool "$pool" --location global \
    --attribute-mapping "$mapping" --attribute-condition "$condition"
else
  condition="attribute.aws_role in [$(IFS=,; echo "${wanted[*]}")]"
  "${gc[@]}" "${providers[@]}" create-aws "$provider" --workload-identity-pool "$pool" --location global \
    --account-id "$AWS_ACCOUNT_ID" --attribute-mapping "$mapping" --attribute-condition "$condition"
fi
echo "  condition: $condition"

step "let the replicate and api roles impersonate $sa"
member_of() { printf 'principalSet://iam.googleapis.com/%s/attribute.aws_role/%s' "$pool_path" "$(role_arn "$1")"; }
for role in "${roles[@]}"; do
  "${gc[@]}" iam service-accounts add-iam-policy-binding "$sa" \
    --role roles/iam.workloadIdentityUser --member "$(member_of "$role")" --format='value(etag)' >/dev/null
  echo "  $role"
done
# An earlier version of this script let migrate impersonate too: take it back.
"${gc[@]}" iam service-accounts remove-iam-policy-binding "$sa" \
  --role roles/iam.workloadIdentityUser --member "$(member_of "${prefix}-migrate-${AWS_REGION}")" \
  --format='value(etag)' >/dev/null 2>&1 || true

step "credential configuration -> $out"
"${gc[@]}" iam workload-identity-pools create-cred-config "${pool_path}/providers/${provider}" \
  --service-account "$sa" --aws --output-file "$out"

cat <<DONE

Done. Deploy with:
  make deploy DEPLOY_ARGS="--region $AWS_REGION --param Prefix=$prefix --param DestBucket=$GCS_BUCKET --gcp-credentials $out"
The file holds no secret (an audience, token URLs and the service account to impersonate).
DONE
