"""Gunicorn settings for `make run` (gunicorn -c mlworkspace/gunicorn.conf.py).

Every value can be overridden from the environment (gunicorn also reads GUNICORN_CMD_ARGS).
"""

import os

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
# Processes x threads: pages and the API are short requests; a monitoring check or a dataset
# upload holds a thread for seconds, so each process has a few threads.
workers = int(os.environ.get("WEB_CONCURRENCY", 2))
worker_class = "gthread"
threads = int(os.environ.get("WEB_THREADS", 4))
timeout = int(os.environ.get("WEB_TIMEOUT", 120))
graceful_timeout = 10
# Request lines on stdout, like runserver's.
accesslog = "-"
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms'
# The proxy that terminates TLS (HTTPS=1) sets X-Forwarded-Proto; gunicorn trusts it only
# from these addresses (FORWARDED_ALLOW_IPS, default 127.0.0.1), and then Django sees https.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
# No control socket (~/.gunicorn/gunicorn.ctl): it is not used here, and two workspaces on
# one machine would share its path.
control_socket_disable = True


def child_exit(server, worker):
    """prometheus-client's multiprocess mode: a web worker that exits stops counting as live
    (its counters stay in the totals, see mlworkspace/metrics.py)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
