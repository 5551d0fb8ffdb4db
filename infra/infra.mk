# infra/infra.mk: deploy and check the CloudFormation template (infra/template.yaml).
# Included by the Makefile after VENV and PY are defined:
#   make deploy-local   data plane to the local stack (or to $AWS_ENDPOINT_URL, e.g. LocalStack)
#   make deploy         build the functions and deploy everything to real AWS (DEPLOY_ARGS=...)
#   make infra-check    cfn-lint + cfn-guard rules + tests/infra (part of make test)
#   make cfn-guard      install cfn-guard into .tools/ (once, ~1.5-3.5 min)

CFN_GUARD_VERSION := 3.2.1
TOOLS_DIR         := .tools
CFN_GUARD         := $(TOOLS_DIR)/bin/cfn-guard
INFRA_TEMPLATE    := infra/template.yaml
DEPLOY_STACK_DIR  ?= $(or $(STACK_DIR),.xcr)
DEPLOY_ARGS       ?=

.PHONY: deploy-local deploy deploy-plan infra-check cfn-guard

cfn-guard: $(CFN_GUARD) ## Install cfn-guard (AWS policy-as-code) into .tools/

$(CFN_GUARD):
	cargo install cfn-guard --version $(CFN_GUARD_VERSION) --locked --root $(TOOLS_DIR)
	@printf '*\n' > $(TOOLS_DIR)/.gitignore

deploy-local: venv ## Deploy the template's data plane to the local stack, or to $AWS_ENDPOINT_URL (LocalStack)
	$(PY) scripts/deploy.py local --dir $(DEPLOY_STACK_DIR) $(DEPLOY_ARGS)

deploy: venv ## Build with cargo lambda and deploy everything to AWS (see infra/DEPLOY.md; DEPLOY_ARGS=...)
	$(PY) scripts/deploy.py aws $(DEPLOY_ARGS)

deploy-plan: venv ## Print what `make deploy` would do, without building or calling AWS
	$(PY) scripts/deploy.py aws --dry-run $(DEPLOY_ARGS)

infra-check: venv $(CFN_GUARD) ## cfn-lint, cfn-guard policy rules, tests/infra (deploys to a private local stack)
	$(VENV)/bin/cfn-lint $(INFRA_TEMPLATE)
	$(CFN_GUARD) validate --rules infra/guard --data $(INFRA_TEMPLATE) --show-summary fail
	$(PY) -m pytest -q -rs -p no:cacheprovider tests/infra
