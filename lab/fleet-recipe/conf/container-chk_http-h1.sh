#!/bin/sh
exec /usr/bin/curl -fsS -o /dev/null -m 1 http://127.1.0.1:8000/
