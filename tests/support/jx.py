#!/usr/bin/python3
# jx EXPR [ARG...]: the tests' JSON query, in the python3 every machine running the tests has.
# Reads one JSON document from stdin, evaluates the Python expression EXPR with the document
# as `d` and the extra arguments as `arg`, prints the result: a string raw, null/true/false
# as JSON words, anything else as compact JSON. Exit status 1 when the result is false or
# null, or the input or expression is bad (message on stderr).
import json
import sys


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: jx.py EXPR [ARG...]")
    expr, arg = sys.argv[1], sys.argv[2:]
    try:
        d = json.load(sys.stdin)
        # one namespace: a comprehension in EXPR sees d and arg (eval locals would be hidden)
        r = eval(expr, {"json": json, "d": d, "arg": arg})
    except Exception as e:  # the test prints what it got; say why there is nothing
        sys.exit("jx: %s: %s: %s" % (expr, type(e).__name__, e))
    if isinstance(r, str):
        print(r)
    else:
        print(json.dumps(r, separators=(",", ":"), ensure_ascii=False))
    sys.exit(1 if r is None or r is False else 0)


main()
