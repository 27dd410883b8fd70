#!/bin/bash
# The tutorial's rollout policy (docs/examples/deploy/canary.lua) and its spec, run by
# `steward test` as the policies' specs are: the real engine, store and sandbox on the fake
# clock; steward test prints the TAP itself.
here=$(cd "$(dirname "$0")/../.." && pwd)
cd "$here" && exec "${STEWARD_BIN:-$here/build/steward}" test docs/examples/deploy
