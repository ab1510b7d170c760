%% Helpers of the ASGI and body suites: curl against a local server, files of
%% random bytes and their expected digests, JSON decoding (mochijson2).
-module(bodypipe_http_curl).

-export([curl/3, curl/4, run/3, random_file/3, expected/1, sha_hex/1, json/1]).

%% curl `Args' on http://127.0.0.1:Port`Path'; with `Stdin' a file fed to
%% curl's stdin (`-T -' then sends it chunked). Returns {Status, Body}.
curl(Port, Args, Path) ->
    curl(Port, Args, Path, undefined).

curl(Port, Args, Path, Stdin) ->
    Url = "http://127.0.0.1:" ++ integer_to_list(Port) ++ Path,
    Cmd = ["-sS", "--max-time", "120", "-o", "-", "-w", "\n%{http_code}" | Args] ++ [Url],
    Line = "curl " ++ lists:join(" ", [quote(A) || A <- Cmd]),
    {0, Out} = case Stdin of
                   undefined -> run("sh", ["-c", Line], 130000);
                   File -> run("sh", ["-c", Line ++ " < " ++ quote(File)], 130000)
               end,
    Parts = binary:split(Out, <<"\n">>, [global]),
    {binary_to_integer(lists:last(Parts)),
     iolist_to_binary(lists:join(<<"\n">>, lists:droplast(Parts)))}.

quote(S) ->
    "'" ++ lists:flatten(string:replace(S, "'", "'\\''", all)) ++ "'".

%% Runs `Exe' (looked up on PATH) and returns {ExitStatus, Output}.
run(Exe, Args, Timeout) ->
    Port = open_port({spawn_executable, os:find_executable(Exe)},
                     [{args, Args}, binary, exit_status, stderr_to_stdout]),
    collect(Port, [], Timeout).

collect(Port, Acc, Timeout) ->
    receive
        {Port, {data, Data}} -> collect(Port, [Data | Acc], Timeout);
        {Port, {exit_status, St}} -> {St, iolist_to_binary(lists:reverse(Acc))}
    after Timeout ->
        catch port_close(Port),
        error({timeout, iolist_to_binary(lists:reverse(Acc))})
    end.

random_file(Dir, Name, Size) ->
    File = filename:join(Dir, Name),
    ok = file:write_file(File, crypto:strong_rand_bytes(Size)),
    File.

expected(File) ->
    {ok, Data} = file:read_file(File),
    #{<<"size">> => byte_size(Data), <<"sha256">> => sha_hex(Data)}.

sha_hex(Data) ->
    list_to_binary(string:lowercase(binary:bin_to_list(binary:encode_hex(crypto:hash(sha256, Data))))).

json(Bin) ->
    mochijson2:decode(Bin, [{format, map}]).
