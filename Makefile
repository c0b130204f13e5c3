# The operator's and the developer's entry points. `make help` lists them.
SHELL := /bin/bash
H := tests/harness
export PATH := $(CURDIR)/.venv/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
# The lab's vault password, made by `make lab-up` (staging/production use their own vault ids).
ifneq ($(wildcard .lab/vault-pass),)
export ANSIBLE_VAULT_PASSWORD_FILE := $(CURDIR)/.lab/vault-pass
endif

.PHONY: help demo test test-fast venv deps docker image lab-up lab-down lab-status lint sanity \
        unit units-ansible-test integration molecule build bench clean ee

help:  ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s "$$(printf '\t')"

demo: deps  ## lab up, provision it, run the whole plan with short bake times, print the report
	@$(H)/demo.sh

test:  ## everything CI runs: lint, sanity, unit, integration, every molecule scenario
	@$(H)/run-tests.sh all

test-fast:  ## yamllint, ansible-lint, ansible-test sanity, unit tests
	@$(H)/run-tests.sh fast

molecule:  ## molecule scenarios only: make molecule S="redis nginx"
	@$(H)/run-tests.sh molecule $(S)

deps:  ## Debian packages and the Python venv
	@$(H)/host-deps.sh && $(H)/venv.sh

venv:  ## the Python venv only
	@$(H)/venv.sh

docker: ## start a Docker engine if none runs
	@$(H)/docker-up.sh

image: docker  ## build (or reuse) the base image gradual/debian12-systemd
	@$(H)/build-image.sh

lab-up: deps image  ## seven lab hosts over SSH (inventories/lab)
	@$(H)/lab.sh up

lab-down:  ## remove the lab hosts and network
	@$(H)/lab.sh down

lab-status:
	@$(H)/lab.sh status

lint: venv  ## yamllint, ansible-lint, and antsibull-docs lint-collection-docs on every plugin's docs
	yamllint -s . && ansible-lint -q && $(H)/docs-lint.sh

sanity: venv
	$(H)/sanity.sh

unit: venv
	python -m pytest -q tests/unit

units-ansible-test: venv  ## the unit tests under ansible-test units (slower than `make unit`; not in make test)
	$(H)/units.sh

integration: venv
	python -m pytest -q tests/integration

build: venv  ## build the collection tarball into build/
	ansible-galaxy collection build --force --output-path build/

ee: venv image  ## build (or reuse) the execution environment gradual/rollout-ee (ansible-builder)
	@$(H)/ee.sh

bench: deps image  ## run the benchmarks, results in bench/results/*.json
	@$(H)/bench.sh

clean:
	rm -rf build reports tests/output
