import traceback

reported: list[str] = []


def report(message, *, exc_info=False):
    reported.append(message + ("\n" + traceback.format_exc() if exc_info else ""))
