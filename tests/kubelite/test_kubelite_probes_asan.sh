#!/bin/bash
# The kubelet lifecycle suite (probes, init containers) against the
# ASan+UBSan kubelite binary (this script runs in the sanitizer build): any
# sanitizer report fails it.
exec bash "$(dirname "$0")/test_kubelite_probes.sh"
