#!/bin/bash
# The shipped policies' specs (policies/**/*_spec.lua), run by `steward test` as part of
# `make test`; steward test prints the TAP itself.
here=$(cd "$(dirname "$0")/../.." && pwd)
cd "$here" && exec "${STEWARD_BIN:-$here/build/steward}" test policies
