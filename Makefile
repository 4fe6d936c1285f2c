# Shortcuts for the scripts the README opens with; each installs what is missing first.
.PHONY: install demo test unit bench clean

install:
	bash scripts/install.sh

demo:
	bash scripts/demo.sh

test:
	bash scripts/test.sh

unit: install
	.venv/bin/python -m pytest -q tests/unit

bench: install
	.venv/bin/python bench/bringup.py

clean: install
	.venv/bin/python -m testbed clean
