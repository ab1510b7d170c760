%% @doc Upload progress for the operator: every request a `bodypipe_http'
%% server is serving, with the bytes of its body received so far and
%% expected, as Erlang terms (`bodypipe_http:requests/1'), as JSON and as
%% Prometheus text, the last two at `/_bodypipe/requests' and
%% `/_bodypipe/metrics' on the server's own port when the server's `admin'
%% option is true (default false: nothing is exposed).
%%
%% The registry is an ETS table of the server (created by
%% `bodypipe_http_server', one row per connection with a request in
%% progress, keyed by the connection's pid); `received' is read from the
%% request's `py_buffer' when asked, so the connection pays one insert and
%% one delete per request, nothing per body block.
-module(bodypipe_http_admin).

-export([new_registry/0, track/5, untrack/1, requests/1, handle/3]).

-export_type([request/0]).

-type request() :: #{id := binary(), method := binary(), target := binary(),
                     received := non_neg_integer(), expected := non_neg_integer() | undefined,
                     body_done := boolean(), age_ms := non_neg_integer()}.

-define(PREFIX, "/_bodypipe/").

%% @doc A server's registry (owned by the calling process).
-spec new_registry() -> ets:tid().
new_registry() ->
    ets:new(bodypipe_http_requests, [set, public, {write_concurrency, true}]).

%% @doc Registers the calling connection's request (`undefined' length: chunked).
-spec track(ets:tid() | undefined, binary(), binary(), py_buffer:buffer(),
            non_neg_integer() | undefined) -> ok.
track(undefined, _Method, _Target, _Buf, _Length) ->
    ok;
track(Tab, Method, Target, Buf, Length) ->
    true = ets:insert(Tab, {self(), Method, Target, Buf, Length,
                            erlang:monotonic_time(millisecond)}),
    ok.

%% @doc The calling connection has no request in progress any more.
-spec untrack(ets:tid() | undefined) -> ok.
untrack(undefined) ->
    ok;
untrack(Tab) ->
    true = ets:delete(Tab, self()),
    ok.

%% @doc The requests in progress, oldest first.
-spec requests(ets:tid()) -> [request()].
requests(Tab) ->
    Now = erlang:monotonic_time(millisecond),
    Rows = lists:keysort(6, ets:tab2list(Tab)),
    [#{id => list_to_binary(pid_to_list(Pid)), method => Method, target => Target,
       received => Written, expected => Length, body_done => Eof or WriterClosed,
       age_ms => Now - Started}
     || {Pid, Method, Target, Buf, Length, Started} <- Rows,
        #{written := Written, eof := Eof, writer_closed := WriterClosed} <- [py_buffer:info(Buf)]].

%% @doc An admin request: `{Status, ContentType, Body}' for a path under
%% `/_bodypipe/', `nomatch' for any other path.
-spec handle(binary(), binary(), bodypipe_http:config()) ->
          nomatch | {binary(), binary(), iodata()}.
handle(Method, <<?PREFIX, What/binary>>, #{requests := Tab} = Cfg) ->
    case {Method, What} of
        {<<"GET">>, <<"requests">>} ->
            {<<"200 OK">>, <<"application/json">>, json(requests(Tab))};
        {<<"GET">>, <<"metrics">>} ->
            {<<"200 OK">>, <<"text/plain; version=0.0.4; charset=utf-8">>,
             metrics(requests(Tab), Cfg)};
        {<<"GET">>, _} ->
            {<<"404 Not Found">>, <<"text/plain; charset=utf-8">>,
             <<"admin endpoints: /_bodypipe/requests, /_bodypipe/metrics\n">>};
        _ ->
            {<<"405 Method Not Allowed">>, <<"text/plain; charset=utf-8">>, <<"GET only\n">>}
    end;
handle(_Method, _Path, _Cfg) ->
    nomatch.

%% Methods are tokens and targets visible ASCII (checked by the parser and
%% bodypipe_http_target), so `"' and `\' are all that needs escaping.
json(Requests) ->
    [<<"{\"requests\":[">>,
     lists:join(<<",">>, [[<<"{\"id\":">>, str(Id), <<",\"method\":">>, str(M),
                           <<",\"target\":">>, str(T), <<",\"received\":">>, integer_to_binary(R),
                           <<",\"expected\":">>, num(E), <<",\"body_done\":">>, atom_to_binary(D),
                           <<",\"age_ms\":">>, integer_to_binary(A), <<"}">>]
                          || #{id := Id, method := M, target := T, received := R, expected := E,
                               body_done := D, age_ms := A} <- Requests]),
     <<"]}\n">>].

str(Bin) ->
    [$", escape(Bin), $"].

escape(Bin) ->
    << <<(case C of $" -> <<"\\\"">>; $\\ -> <<"\\\\">>; _ -> <<C>> end)/binary>>
       || <<C>> <= Bin >>.

num(undefined) -> <<"null">>;
num(N) -> integer_to_binary(N).

metrics(Requests, #{counters := Counters}) ->
    Labels = fun(#{id := Id, method := M, target := T}) ->
                     [<<"{id=">>, str(Id), <<",method=">>, str(M), <<",target=">>, str(T), <<"}">>]
             end,
    [gauge(<<"bodypipe_connections">>, <<"Open connections.">>,
           [{[], bodypipe_http_server:connections(Counters)}]),
     gauge(<<"bodypipe_requests_in_flight">>, <<"Requests being served.">>,
           [{[], length(Requests)}]),
     gauge(<<"bodypipe_body_readers">>, <<"Requests whose body is being read.">>,
           [{[], bodypipe_http_server:body_readers(Counters)}]),
     gauge(<<"bodypipe_request_body_received_bytes">>,
           <<"Bytes of the request body received so far, per request in flight.">>,
           [{Labels(R), Received} || #{received := Received} = R <- Requests]),
     gauge(<<"bodypipe_request_body_expected_bytes">>,
           <<"Content-Length of the request body, per request in flight (absent: chunked).">>,
           [{Labels(R), E} || #{expected := E} = R <- Requests, E =/= undefined])].

gauge(Name, Help, Samples) ->
    [<<"# HELP ">>, Name, <<" ">>, Help, <<"\n# TYPE ">>, Name, <<" gauge\n">>,
     [[Name, L, <<" ">>, integer_to_binary(V), <<"\n">>] || {L, V} <- Samples]].
