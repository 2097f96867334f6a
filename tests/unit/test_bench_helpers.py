"""The benchmark harness's pure helpers: rounds and medians, /proc parsing, the HAProxy
configuration, CPU-per-work figures and the table cells (no broker, no processes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import amqpperf, haproxy, report
from bench.cli import build_parser, make_params, repeat_count, selected_scenarios
from bench.procstat import (
    parse_limits_nofile,
    parse_stat_cpu_ticks,
    parse_status_rss_kib,
)
from bench.rawamqp import Target
from bench.rounds import median_metrics, medians, round_order
from bench.scenarios import SCENARIOS, cpu_metrics
from bench.targets import proxy_argv


def test_round_order_rotates_so_every_target_goes_first_once() -> None:
    names = ["direct", "proxy", "haproxy"]
    orders = [round_order(names, r) for r in range(4)]
    assert orders[0] == ["direct", "proxy", "haproxy"]
    assert orders[1] == ["proxy", "haproxy", "direct"]
    assert orders[2] == ["haproxy", "direct", "proxy"]
    assert orders[3] == orders[0]
    assert round_order([], 5) == []


def test_median_metrics_skips_failed_runs_and_text() -> None:
    runs = [
        {"msgs_per_s": 10.0, "note": "x"},
        {"error": "AmqpError: boom"},
        {"msgs_per_s": 30.0, "cpu_s": 2.0},
        {"msgs_per_s": 20.0, "cpu_s": 4.0},
    ]
    med = median_metrics(runs)
    assert med == {"msgs_per_s": 20.0, "cpu_s": 3.0, "runs_ok": 3.0}


def test_rss_growth_comes_from_the_first_successful_round() -> None:
    runs = [
        {"error": "x"},
        {"kib_per_session": 12.0, "open_s": 3.0},
        {"kib_per_session": 0.1, "open_s": 1.0},
        {"kib_per_session": 0.2, "open_s": 2.0},
    ]
    assert median_metrics(runs) == {"kib_per_session": 12.0, "open_s": 2.0, "runs_ok": 3.0}


def test_median_metrics_all_failed_keeps_first_error() -> None:
    assert median_metrics([{"error": "a"}, {"error": "b"}]) == {"error": "a"}
    assert medians({"msgs": {"direct": [{"x": 1.0}]}})["msgs"]["direct"]["x"] == 1.0


def test_parse_stat_counts_fields_after_the_last_parenthesis() -> None:
    # comm with spaces and a ')' inside; utime=1234 (field 14), stime=56 (field 15)
    fields = ["S", "1", "2", "3", "0", "-1", "4194560", "10", "0", "0", "0", "1234", "56"]
    line = "4242 (weird) name) " + " ".join(fields + ["0"] * 30)
    assert parse_stat_cpu_ticks(line) == 1290


def test_parse_status_rss() -> None:
    text = "Name:\tpython\nVmPeak:\t  100 kB\nVmRSS:\t   61234 kB\nThreads:\t3\n"
    assert parse_status_rss_kib(text) == 61234
    with pytest.raises(ValueError):
        parse_status_rss_kib("Name:\tkthreadd\n")


def test_parse_limits_nofile() -> None:
    text = (
        "Limit                     Soft Limit           Hard Limit           Units     \n"
        "Max open files            20000                40000                files     \n"
    )
    assert parse_limits_nofile(text) == 20000
    assert parse_limits_nofile("Max open files  unlimited  unlimited  files\n") is None


def test_haproxy_config_is_tcp_to_the_broker_without_logging() -> None:
    text = haproxy.config_text(5999, Target("127.0.0.1", 5672), 9950)
    assert "mode tcp" in text
    assert "bind 127.0.0.1:5999" in text
    assert "server broker 127.0.0.1:5672" in text
    assert "timeout client 1h" in text and "timeout server 1h" in text
    assert "timeout connect 5s" in text
    assert text.count("maxconn 9950") == 2
    assert "\n    log" not in text and "\n    nbthread" not in text
    assert haproxy.argv("/usr/sbin/haproxy", Path("/t/h.cfg")) == [
        "/usr/sbin/haproxy",
        "-db",
        "-f",
        "/t/h.cfg",
    ]


def test_haproxy_variants_differ_only_where_they_say() -> None:
    broker = Target("127.0.0.1", 5672)
    default = haproxy.config_text(5999, broker, 9950)
    one_thread = haproxy.config_text(5999, broker, 9950, threads=1)
    splice = haproxy.config_text(5999, broker, 9950, splice=True)
    assert "\n    nbthread 1\n" in one_thread and "splice" not in one_thread
    assert "\n    option splice-auto\n" in splice and "\n    nbthread" not in splice
    strip = {line for line in one_thread.splitlines() if "nbthread" not in line}
    assert strip == {line for line in default.splitlines() if "nbthread" not in line}
    assert (haproxy.ONE_THREAD.name, haproxy.ONE_THREAD.threads) == ("haproxy-1thread", 1)


def test_haproxy_maxconn_fits_the_descriptor_limit() -> None:
    assert haproxy.fitting_maxconn(1_048_576) == 20000
    assert haproxy.fitting_maxconn(20000) == 9950
    assert haproxy.fitting_maxconn(50) == 1
    assert haproxy.fitting_maxconn(20000, splice=True) == 7960  # pipes: 2.5 descriptors each


def test_cpu_metrics_per_unit_of_work() -> None:
    assert cpu_metrics("msgs", {"messages": 200_000.0}, 2.0)["cpu_s_per_million_msgs"] == 10.0
    assert cpu_metrics("mib", {"messages": 1024.0}, 3.0)["cpu_s_per_gib"] == 3.0
    assert cpu_metrics("conn", {"connections": 500.0}, 0.5)["cpu_us_per_conn"] == 1000.0
    assert cpu_metrics("msgs", {}, 1.0) == {"proxy_cpu_s": 1.0}
    # amqpperf's scenarios are read in the same units as the bench's own.
    assert cpu_metrics("go-conn", {"connections": 500.0}, 0.5)["cpu_us_per_conn"] == 1000.0
    assert cpu_metrics("go-msgs", {"messages": 1e6}, 4.0)["cpu_s_per_million_msgs"] == 4.0


def test_amqpperf_scenarios_drop_out_without_the_binary() -> None:
    everything = selected_scenarios(None, quick=False)
    assert {"go-msgs", "go-mib", "go-conn", "go-latency"} <= set(everything)
    assert not any(s.startswith("go-") for s in selected_scenarios(None, False, go=False))
    assert selected_scenarios(["go-conn", "conn"], quick=True) == ["conn", "go-conn"]


def test_amqpperf_dials_tls_by_the_certificate_name_with_the_bench_ca() -> None:
    plain = amqpperf.url_of(Target("127.0.0.1", 5673))
    assert plain == ("amqp://guest:guest@127.0.0.1:5673/", {})
    url, env = amqpperf.url_of(Target("127.0.0.1", 5674, tls_ca="/ca.pem"))
    assert url == "amqps://guest:guest@localhost:5674/" and env == {"SSL_CERT_FILE": "/ca.pem"}


def test_cpu_per_unit_of_work_against_haproxy() -> None:
    med = {
        "go-conn": {"proxy": {"cpu_us_per_conn": 600.0}, "haproxy": {"cpu_us_per_conn": 200.0}},
        "msgs": {
            "proxy": {"cpu_s_per_million_msgs": 5.0},
            "haproxy": {"cpu_s_per_million_msgs": 4.0},
        },
    }
    lines = report.cpu_vs_haproxy_text(med, ["direct", "proxy", "haproxy"])
    assert lines == ["proxy CPU per unit of work / haproxy's: msgs 1.25, go-conn 3.00"]
    assert report.cpu_vs_haproxy_text(med, ["direct", "proxy"]) == []


def test_scenario_selection_and_repeats() -> None:
    assert selected_scenarios(None, quick=False) == list(SCENARIOS)
    assert "idle" not in selected_scenarios(None, quick=True)
    assert selected_scenarios(["idle", "msgs"], quick=True) == ["msgs", "idle"]
    assert repeat_count(None, quick=False) == 3
    assert repeat_count(None, quick=True) == 1
    assert repeat_count(5, quick=True) == 5


def test_overrides_reach_the_scenario_parameters() -> None:
    defaults = make_params(build_parser().parse_args([]))
    assert defaults.conn_workers == 4  # the "4 concurrent"
    tuned = make_params(
        build_parser().parse_args(["--quick", "--conn-workers", "16", "--conn-seconds", "2"])
    )
    assert (tuned.conn_workers, tuned.conn_seconds) == (16, 2.0)
    assert tuned.msg_count == make_params(build_parser().parse_args(["--quick"])).msg_count
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--conn-workers", "0"])


def test_coalescing_column_option_and_the_proxy_command_line_it_adds() -> None:
    assert build_parser().parse_args([]).also_coalescing is None
    assert build_parser().parse_args(["--also-coalescing"]).also_coalescing == 1
    assert build_parser().parse_args(["--also-coalescing", "3"]).also_coalescing == 3
    argv = proxy_argv(
        5999, Target("127.0.0.1", 5672), Path("ctl"), Path("logs"), 15999,
        extra=["--coalesceReadsMs", "3"],
    )  # fmt: skip
    assert argv[-2:] == ["--coalesceReadsMs", "3"]
    assert argv[argv.index("--listenPort") + 1] == "5999"


def test_table_shows_na_for_direct_cpu_and_error_for_failed_targets() -> None:
    results: report.Results = {
        "msgs": {
            "direct": {"msgs_per_s": 100.0},
            "proxy": {"msgs_per_s": 50.0, "cpu_s_per_million_msgs": 12.5},
            "haproxy": {"error": "AmqpError: boom"},
        }
    }
    lines = report.table_text(results, ["direct", "proxy", "haproxy"]).splitlines()
    msgs_row = next(line for line in lines if line.startswith("| msgs/s"))
    cpu_row = next(line for line in lines if "CPU s / M msgs" in line)
    assert [c.strip() for c in msgs_row.split("|")[2:-1]] == ["100", "50.0", "0.50", "ERROR", "-"]
    assert [c.strip() for c in cpu_row.split("|")[2:-1]] == ["n/a", "12.5", "-", "ERROR", "-"]


def test_base_and_traced_column_options_and_the_base_command_line() -> None:
    args = build_parser().parse_args(["--also-base", "/src/main", "--also-traced"])
    assert args.also_base == Path("/src/main") and args.also_traced is True
    assert build_parser().parse_args([]).also_traced is False
    argv = proxy_argv(
        5999, Target("127.0.0.1", 5672), Path("ctl"), Path("logs"), 15999, source=Path("/src/main")
    )
    # The other tree's package comes first on the path; the options follow unchanged.
    assert argv[1] == "-c" and "sys.path.insert(0, '/src/main')" in argv[2]
    assert "runpy.run_module('amqpprox'" in argv[2]
    assert argv[3:5] == ["--listenPort", "5999"]
