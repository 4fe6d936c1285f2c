# The two commands the README opens with. Both install what is missing first.
PY := .venv/bin/python

.PHONY: install demo test unit lint bench clean

install:
	@bash scripts/install.sh

demo: install
	$(PY) -m testbed run

test: install
	$(PY) -m ruff check testbed tests bench
	$(PY) -m pytest -q tests

unit: install
	$(PY) -m pytest -q tests/unit

bench: install
	$(PY) bench/bringup.py

clean: install
	$(PY) -m testbed clean
