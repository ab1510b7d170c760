%% @doc The access log of a `bodypipe_http' server: one line per request in
%% the combined log format (Apache's and nginx's default), written by one
%% process per log to standard output or appended to a file.
%%
%% ```
%% 127.0.0.1 - - [02/Dec/2026:05:47:37 +0000] "POST /upload HTTP/1.1" 200 96 "-" "curl/7.88.1"
%% '''
%%
%% The line is formatted by the connection process (the writer only writes),
%% and a writer writes what has queued up in one call. Several worker VMs may
%% append to one file: it is opened in append mode, so each write lands at the
%% end whole. Times are UTC. The status is `-' when no response was sent (the
%% client went away first); the size is the response body's bytes, `-' for
%% none (as in the format).
-module(bodypipe_http_access_log).

-export([start_link/1, is_log/1, request/2, format/1]).
-export([init/2]).

-export_type([log/0, entry/0]).

-opaque log() :: {bodypipe_http_access_log, pid()}.

-type entry() :: #{remote := binary(), method := binary() | none, target := binary(),
                   version := {1, 0 | 1}, status := 100..599 | none,
                   bytes := non_neg_integer(), referer := binary() | none,
                   user_agent := binary() | none}.

%% @doc Starts a writer to `stdout' or to the file `{file, Path}' (created if
%% missing, appended to).
-spec start_link(stdout | {file, file:filename_all()}) -> {ok, log()} | {error, term()}.
start_link(Dest) ->
    Parent = self(),
    Pid = proc_lib:spawn_link(?MODULE, init, [Parent, Dest]),
    receive
        {Pid, ok} -> {ok, {?MODULE, Pid}};
        {Pid, {error, _} = E} -> E
    end.

%% @doc Whether `Term' is a log (for option checks).
-spec is_log(term()) -> boolean().
is_log({?MODULE, Pid}) -> is_pid(Pid);
is_log(_) -> false.

%% @doc Logs one request (does not wait for the write).
-spec request(log() | none, entry()) -> ok.
request(none, _Entry) ->
    ok;
request({?MODULE, Pid}, Entry) ->
    Pid ! {line, format(Entry)},
    ok.

%% @doc The combined-format line of `Entry', newline included.
-spec format(entry()) -> iodata().
format(#{remote := Remote, method := Method, target := Target, version := {Major, Minor},
         status := Status, bytes := Bytes, referer := Referer, user_agent := UA}) ->
    Request = case Method of
                  none -> $-;   % the head could not be parsed
                  _ -> [escape(Method), $\s, escape(Target), <<" HTTP/">>, $0 + Major, $.,
                        $0 + Minor]
              end,
    [Remote, <<" - - [">>, timestamp(), <<"] \"">>, Request, <<"\" ">>,
     case Status of none -> $-; _ -> integer_to_binary(Status) end, $\s,
     case Bytes of 0 -> $-; _ -> integer_to_binary(Bytes) end,
     <<" \"">>, quoted(Referer), <<"\" \"">>, quoted(UA), <<"\"\n">>].

timestamp() ->
    {{Y, Mo, D}, {H, Mi, S}} = calendar:system_time_to_universal_time(erlang:system_time(second),
                                                                      second),
    Month = element(Mo, {"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct",
                         "Nov", "Dec"}),
    io_lib:format("~2..0b/~s/~4..0b:~2..0b:~2..0b:~2..0b +0000", [D, Month, Y, H, Mi, S]).

quoted(none) -> $-;
quoted(Value) -> escape(Value).

%% A client controls these fields: `"' and `\' are escaped and bytes outside
%% printable ASCII written as \xHH, as nginx does, so one request is one line
%% that cannot forge another.
escape(Bin) ->
    << <<(esc(C))/binary>> || <<C>> <= Bin >>.

esc($") -> <<"\\\"">>;
esc($\\) -> <<"\\\\">>;
esc(C) when C >= 16#20, C < 16#7f -> <<C>>;
esc(C) -> iolist_to_binary(io_lib:format("\\x~2.16.0B", [C])).

%% @private
-spec init(pid(), stdout | {file, file:filename_all()}) -> no_return().
init(Parent, stdout) ->
    Parent ! {self(), ok},
    loop(fun(Lines) -> io:put_chars(standard_io, Lines) end);
init(Parent, {file, Path}) ->
    case file:open(Path, [append, raw, binary]) of
        {ok, Fd} ->
            Parent ! {self(), ok},
            loop(fun(Lines) ->
                         case file:write(Fd, Lines) of
                             ok -> ok;
                             {error, Reason} ->
                                 logger:warning("bodypipe_http: access log ~ts: ~p", [Path, Reason])
                         end
                 end);
        {error, Reason} ->
            Parent ! {self(), {error, {access_log, Path, Reason}}},
            exit(normal)
    end.

loop(Write) ->
    receive
        {line, Line} ->
            Write([Line | more([], 1000)]),
            loop(Write)
    end.

%% Whatever else has queued up, up to Max lines, in arrival order.
more(Acc, 0) ->
    lists:reverse(Acc);
more(Acc, Max) ->
    receive
        {line, Line} -> more([Line | Acc], Max - 1)
    after 0 ->
        lists:reverse(Acc)
    end.
