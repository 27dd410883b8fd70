#!/bin/bash
# Archival on the SQLite store: tests/support/archive_e2e.sh (old events and decisions into
# zstd files, replay from seq 1, verify, a flipped byte).
. "$(dirname "$0")/../support/daemon.sh"
. "$here/tests/support/archive_e2e.sh"
