"""How the API answers a failed generation: ``Api.handle_exception``'s JSON body and status."""


def handle_exception(e):
    body = {"error": type(e).__name__, "detail": vars(e).get("detail", ""), "body": vars(e).get("body", ""), "errors": str(e)}
    return vars(e).get("status_code", 500), body
