"""`esca bench`: the seed's experiment (wrk against lighttpd or nginx, with and
without pyesca) as one command, modes interleaved, errors and kernel entries
reported beside requests/s.

    servers   docroot, generated configs, start/stop by pid (shared with the tests)
    wrk       run wrk, bounded in time, and parse its output
    perf      kernel entries of the server, counted from outside (perf stat)
    runner    the experiment: modes x rounds x cases, one server process per run
    report    terminal table, JSON, markdown, PNG
"""
