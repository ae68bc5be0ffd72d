# The two front-door commands (see README):  make demo   and   make test
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEMO_DB ?= sqlite:///data/demo.db

.PHONY: demo test bench lint clean airflow airflow-trigger airflow-dags-test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Installs exactly the pinned, hash-checked dependencies, then growthflow itself (editable).
$(VENV)/.installed-%: requirements/%.lock pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q --require-hashes -r requirements/$*.lock
	$(BIN)/pip install -q --no-deps -e .
	touch $@

demo: $(VENV)/.installed-main
	$(BIN)/growthflow attribution demo-data --db $(DEMO_DB) --force
	$(BIN)/growthflow attribution run --db $(DEMO_DB) --start 2023-09-01 --end 2023-09-07 \
		--csv out/channel_reporting.csv
	$(BIN)/growthflow attribution report --db $(DEMO_DB) --html out/attribution.html \
		--compare ihc,linear,last-touch,markov

test: $(VENV)/.installed-dev
	$(BIN)/pytest

bench: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/bench_attribution.py
	$(BIN)/python benchmarks/bench_attribution_shapes.py
	$(BIN)/python benchmarks/bench_commissions.py
	$(BIN)/python benchmarks/bench_models.py

# Local Airflow 3 (api-server, scheduler, dag-processor, triggerer) on 127.0.0.1 with our DAGs
# and the SQLite demo data. The port must appear in both URLs: tasks report back through the
# execution API at that address.
AIRFLOW_PORT ?= 8080
AIRFLOW_ENV = PATH=$(CURDIR)/$(BIN):$$PATH AIRFLOW_HOME=$(CURDIR)/.airflow AIRFLOW__CORE__DAGS_FOLDER=$(CURDIR)/dags \
	AIRFLOW__CORE__LOAD_EXAMPLES=False AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=False \
	AIRFLOW__API__HOST=127.0.0.1 AIRFLOW__API__PORT=$(AIRFLOW_PORT) \
	AIRFLOW__API__BASE_URL=http://127.0.0.1:$(AIRFLOW_PORT) \
	AIRFLOW__CORE__EXECUTION_API_SERVER_URL=http://127.0.0.1:$(AIRFLOW_PORT)/execution/ \
	GROWTHFLOW_DATABASE_URL=sqlite:///$(CURDIR)/data/demo.db

airflow: $(VENV)/.installed-dev
	@test -f data/demo.db || $(BIN)/growthflow attribution demo-data --db $(DEMO_DB)
	@echo "Airflow UI: http://127.0.0.1:$(AIRFLOW_PORT)  user admin, password in .airflow/simple_auth_manager_passwords.json.generated"
	$(AIRFLOW_ENV) $(BIN)/airflow standalone

airflow-trigger: $(VENV)/.installed-dev
	$(AIRFLOW_ENV) $(BIN)/airflow dags trigger growthflow_attribution \
		-c '{"start": "2023-09-01", "end": "2023-09-07", "csv_path": "$(CURDIR)/out/airflow_channel_reporting.csv"}'

# One run of the DAG inside this process (airflow dags test), its metadata DB and logs under
# .airflow/ like everything Airflow writes here.
airflow-dags-test: $(VENV)/.installed-dev
	@test -f data/demo.db || $(BIN)/growthflow attribution demo-data --db $(DEMO_DB)
	@mkdir -p .airflow
	$(AIRFLOW_ENV) $(BIN)/airflow db migrate > .airflow/migrate.log 2>&1 || (cat .airflow/migrate.log; exit 1)
	$(AIRFLOW_ENV) $(BIN)/airflow dags test growthflow_attribution \
		-c '{"start": "2023-09-01", "end": "2023-09-07", "model": "linear"}'

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) data out .pytest_cache .airflow
