# Two entry points: `make test` and `make demo`. Each creates .venv on its own.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Test processes; each test module runs whole in one of them (its fixtures are shared).
# A worker that pytest-timeout stops (a hung test) is not replaced: xdist would re-run the
# hung test on the new worker, up to 8 times; this way it fails once, by name, and the
# other worker finishes the rest.
TEST_WORKERS ?= 2

# The quick start's output (make demo), which make app serves.
QUICKSTART ?= runs/quickstart

.PHONY: test demo app install clean-venv

$(STAMP): requirements.txt requirements-app.txt requirements-test.txt setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt -r requirements-app.txt -r requirements-test.txt
	$(PY) -m pip install -q --no-deps -e .
	# An editable install cannot carry the .pth that lets `import imgaug` run under numpy 2.
	$(PY) -m imgaug_numpy2_hook
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --max-worker-restart=0

demo: $(STAMP)
	$(PY) samples/shapes/quickstart.py --out runs/quickstart

# The web page on the quick start's exported model and its val images (make demo first).
app: $(STAMP)
	@test -f $(QUICKSTART)/exported/saved_model.pb || { echo "make app: no $(QUICKSTART)/exported (the quick start's model); run make demo first"; exit 2; }
	$(PY) -m siamese_mrcnn.app --model $(QUICKSTART)/exported --images $(QUICKSTART)/data/val2017

clean-venv:
	rm -rf $(VENV)
