#!/usr/bin/env escript
%%! -noshell
%% py_buffer:write/2 calls per second from one process (64 B, 1 KiB, 64 KiB).
%% Run from erlang/ after `rebar3 compile` (the umbrella): escript bench/write_bench.escript [Seconds]
main(Args) ->
    Here = filename:dirname(filename:absname(escript:script_name())),
    %% The umbrella's build (rebar3 compile in erlang/): bodypipe_bench is in bodypipe_demo.
    [true = code:add_patha(filename:join([Here, "..", "_build", "default", "lib", App, "ebin"]))
     || App <- ["bodypipe", "bodypipe_demo"]],
    Seconds = case Args of [S] -> list_to_float(S ++ case lists:member($., S) of true -> ""; false -> ".0" end); [] -> 2.0 end,
    _ = bodypipe_bench:run([64, 1024, 65536], Seconds),
    ok.
