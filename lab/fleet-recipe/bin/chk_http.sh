#!/bin/sh
# track_script: healthy while this host's own HTTP port answers
exec /usr/bin/curl -fsS -o /dev/null -m 1 "http://$1:8000/"
