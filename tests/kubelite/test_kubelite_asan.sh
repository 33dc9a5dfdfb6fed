#!/bin/bash
# The kubectl client suite against the ASan+UBSan kubelite binary (this
# script runs in the sanitizer build): any sanitizer report fails it.
exec bash "$(dirname "$0")/test_kubelite_kubectl.sh"
