#!/usr/bin/env bash
# antsibull-docs lint-collection-docs over every plugin's documentation (modules, action plugins,
# filters, callbacks, doc fragments), as the docs site build would read them.
# It copies this collection and the collections it depends on (found by ansible-galaxy in .venv's
# site-packages) with `git ls-files` when they sit in a git work tree; .venv is in ours but
# git-ignored, so the copies would be empty: git must not look above site-packages for them.
# shellcheck source=tests/harness/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$GR_ROOT" || exit 1
site=$(python -c 'import ansible_collections, os; print(os.path.dirname(list(ansible_collections.__path__)[0]))') \
  || die "python cannot import ansible_collections: run make venv first"
GIT_CEILING_DIRECTORIES="$site" exec antsibull-docs lint-collection-docs --plugin-docs .
