%% @doc One HTTP/1.1 connection of a `bodypipe_http' server: a process that
%% owns the socket for the connection's whole life, request after request
%% (keep-alive, pipelining).
%%
%% Per request:
%%
%% 1. The head: socket reads (passive, at most `chunk_size' each) are
%%    accumulated and handed to `bodypipe_http_parser:parse_head/2' (httparse)
%%    whenever they may complete a line; the accumulated bytes never exceed
%%    `max_head_size' plus one read before the parser answers 431, so an endless
%%    head costs the server about that much. The whole head must arrive within
%%    `header_timeout' (else 408, or a silent close if nothing at all arrived);
%%    an idle keep-alive connection is closed after `keepalive_timeout'.
%% 2. Checks before any byte of the body is read: the target form (400), the
%%    route (404), `max_body' against the Content-Length (413), and a free
%%    body-reader slot for a request with a body (503 + `Retry-After'). Then
%%    `100 Continue' if the client asked for it, and the application is started
%%    (`bodypipe_wsgi:run_async/2', or `bodypipe_asgi:run_async/3' for an ASGI
%%    mount: both answer alike) with the ring-mode buffer as its body. A
%%    `buffer_chunked' WSGI mount with a chunked body is started only once the
%%    whole body is in an unbounded buffer, with its CONTENT_LENGTH.
%%    With the `admin' option, `/_bodypipe/' paths are answered here
%%    (`bodypipe_http_admin').
%% 3. The exchange: one `receive' loop streams the body from the socket
%%    (`{active, once}') into the buffer, fixed-length with `py_buffer:write/2'
%%    (bytes past the Content-Length are kept for the next request) or chunked
%%    with `bodypipe_http_parser:chunked_feed/3', pauses on `full' until
%%    `{py_buffer, Buf, writable}' (the socket is not read meanwhile, so TCP flow
%%    control slows the client), and at the same time sends the response blocks
%%    as the application produces them (each step of the iterable is another
%%    asynchronous call). The body's idle time is bounded by `body_timeout'
%%    (only while the server waits for the client, not while the application is
%%    slow to read), the application's by `app_timeout'.
%%    Once the body is complete and while the application runs, the socket
%%    is watched (`bodypipe_http_watch'): bytes of a pipelined request are
%%    kept for it (up to `max_head_size'), a half-close is no reason to stop,
%%    and a reset is the client gone: an ASGI app's `receive()' yields
%%    `http.disconnect', a WSGI app's response is dropped, the access log says
%%    `-' (or the status and the bytes actually sent).
%% 4. The connection is kept for the next request only when the request and
%%    the response allow it, the body was read to its end and the response went
%%    out complete and exactly framed; otherwise it is closed after the
%%    response (with a bounded drain of what the client still sends, so that it
%%    reads the response rather than a reset).
%%
%% The process never exits while a call into the application is in flight: it
%% waits for the result and closes the response iterable (PEP 3333), even after
%% the client is gone or `app_timeout' closed the socket.
-module(bodypipe_http_conn).

-export([start_link/1]).
-export([init/1, head_read/1]).

-record(c, {sock :: gen_tcp:socket(),
            cfg :: bodypipe_http:config(),
            info :: bodypipe_wsgi:conn_info()}).

-type body() :: {fixed, pos_integer()} | {chunked, term()}
              | done | unread | failed | disconnected.

-record(x, {c :: #c{},
            method :: binary(),
            target :: binary(),
            version :: {1, 0 | 1},
            keep_alive :: boolean(),
            buf :: py_buffer:buffer(),
            body :: body(),
            blocked = false :: false | binary(),   % body bytes waiting for room
            rest = <<>> :: binary(),               % bytes after the body
            body_deadline = infinity :: integer() | infinity,
            app :: {run, reference()} | {step, reference(), py:pyobj()} | done
                 | {deferred, fun((map()) -> {ok, reference()} | {error, term()}), map()},
            app_deadline = infinity :: integer() | infinity,
            resp = none :: none | {sent, bodypipe_http_response:framing()} | over,
            sock = open :: open | draining | closed,
            drain_deadline = infinity :: integer() | infinity,
            drain_left = 0 :: integer(),
            close = false :: boolean(),
            big_reads = false :: boolean(),        % socket reads of chunk_size
            watch = off :: bodypipe_http_watch:state(),
            token = none :: none | integer(),      % an ASGI call's, for disconnect
            status = none :: none | 100..599,      % for the access log
            sent = 0 :: non_neg_integer()}).       % body bytes sent, for the access log

-define(SLOT, bodypipe_http_body_reader).
%% The head of the request in progress, for the access log.
-define(REQUEST, bodypipe_http_request).
%% Socket reads while a head is awaited (the listening socket's `buffer'): the
%% driver keeps a buffer of that size per connection, idle ones included.
%% Bodies are read `chunk_size' at a time.
-define(HEAD_READ, 8192).
-define(BODY_READERS, 2).
%% After an early response or an error: how long and how much of what the
%% client still sends is read and dropped before the socket closes.
-define(DRAIN_MS, 2000).
-define(DRAIN_BYTES, 64 bsl 20).

%% @doc Starts a connection process; it waits for `{bodypipe_http_socket, Sock}'
%% from the acceptor, which has made it the socket's owner.
-spec start_link(bodypipe_http:config()) -> pid().
start_link(Cfg) ->
    proc_lib:spawn_link(?MODULE, init, [Cfg]).

%% @private
-spec init(bodypipe_http:config()) -> ok.
init(#{counters := Counters} = Cfg) ->
    %% The acceptor counted this connection in.
    try
        receive
            {bodypipe_http_socket, Sock} -> connection(Sock, Cfg);
            bodypipe_http_no_socket -> ok
        after 10000 ->
            ok
        end
    after
        release_reader(Cfg),
        bodypipe_http_admin:untrack(maps:get(requests, Cfg, undefined)),
        bodypipe_http_server:connection_closed(Counters)
    end.

connection(Sock, #{header_timeout := HeaderTimeout} = Cfg) ->
    C = #c{sock = Sock, cfg = Cfg, info = conn_info(Sock)},
    head(C, <<>>, unchecked, fresh, deadline(HeaderTimeout)).

conn_info(Sock) ->
    Local = case inet:sockname(Sock) of
                {ok, {Addr, Port}} -> #{server_name => ntoa(Addr), server_port => Port};
                {error, _} -> #{server_name => <<"localhost">>, server_port => 0}
            end,
    case inet:peername(Sock) of
        {ok, {PAddr, PPort}} -> Local#{remote_addr => ntoa(PAddr), remote_port => PPort};
        {error, _} -> Local
    end.

ntoa(Addr) ->
    list_to_binary(inet:ntoa(Addr)).

%% ---------------------------------------------------------------------------
%% The head.

%% After a response on a kept connection: `Rest' holds pipelined bytes, if any.
next_request(#c{sock = Sock, cfg = #{header_timeout := HT, keepalive_timeout := KT}} = C,
             Rest) ->
    case Rest of
        <<>> ->
            case gen_tcp:recv(Sock, 0, 0) of
                {ok, Data} ->
                    received(C, <<>>, unchecked, Data, deadline(HT));
                {error, timeout} ->
                    %% Idle: keep no garbage of the last request (socket reads
                    %% are binaries of up to chunk_size) while waiting.
                    garbage_collect(),
                    head(C, <<>>, unchecked, idle, deadline(KT));
                {error, _} ->
                    close(C)
            end;
        _ ->
            received(C, <<>>, unchecked, Rest, deadline(HT))
    end.

%% Phase: fresh (a new connection, nothing received yet), idle (kept
%% connection, nothing received yet) or partial. Line: whether the request
%% line has been checked yet (unchecked | checked).
head(#c{sock = Sock, cfg = #{header_timeout := HT, counters := Counters}} = C, Acc, Line, Phase,
     Deadline) ->
    case recv_head(Sock, Counters, Phase, timeout(Deadline)) of
        {ok, Data} when Phase =:= idle ->
            received(C, Acc, Line, Data, deadline(HT));
        {ok, Data} ->
            received(C, Acc, Line, Data, Deadline);
        {error, timeout} when Phase =:= partial ->
            reject(C, 408, header_timeout, undefined);
        {error, _} ->
            close(C)
    end.

%% A kept connection with nothing of its next request received yet counts as
%% waiting (a server shutting down closes those without cutting a request). A
%% fresh one does not: its client connected to send a request.
recv_head(Sock, Counters, idle, Timeout) ->
    ok = bodypipe_http_server:waiting_started(Counters),
    try gen_tcp:recv(Sock, 0, Timeout)
    after bodypipe_http_server:waiting_ended(Counters)
    end;
recv_head(Sock, _Counters, _Phase, Timeout) ->
    gen_tcp:recv(Sock, 0, Timeout).

%% The head is parsed when it may be complete (an empty line arrived), when a
%% limit is passed, and once early for the request line (so a bad one is
%% answered at once). Not on every line: the accumulated binary is appended to
%% in place, which handing it to a NIF would stop (every later append would
%% copy it, and an endless head would then cost the VM several times its size
%% in fragmented memory). A head sent one byte at a time is not parsed once per
%% byte either.
received(#c{cfg = #{max_request_line := MaxLine, max_head_size := MaxHead}} = C,
         Acc0, Line, Data, Deadline) ->
    Acc = <<Acc0/binary, Data/binary>>,
    %% Where an empty line could end within the new bytes.
    From = max(0, byte_size(Acc0) - 2),
    MayEnd = binary:match(Acc, [<<"\n\r\n">>, <<"\n\n">>],
                          [{scope, {From, byte_size(Acc) - From}}]) =/= nomatch,
    NewLf = Line =:= unchecked andalso binary:match(Data, <<"\n">>) =/= nomatch,
    if
        MayEnd; byte_size(Acc) > MaxHead ->
            parse(C, Acc, Line, Deadline);
        NewLf ->
            %% The request line is complete: check it on a copy (Acc stays
            %% appendable); the head goes on unless it is refused.
            case parse_copy(C, Acc) of
                more -> head(C, Acc, request_line_seen(Acc), partial, Deadline);
                Refused -> Refused
            end;
        Line =:= unchecked, byte_size(Acc) > MaxLine ->
            parse(C, Acc, Line, Deadline);   % 414
        true ->
            head(C, Acc, Line, partial, Deadline)
    end.

%% Leading empty lines (RFC 9112 §2.2) do not count as the request line.
request_line_seen(<<C, Rest/binary>>) when C =:= $\r; C =:= $\n -> request_line_seen(Rest);
request_line_seen(<<>>) -> unchecked;
request_line_seen(_) -> checked.

parse(#c{cfg = #{head_limits := Limits}} = C, Acc, Line, Deadline) ->
    case bodypipe_http_parser:parse_head(Acc, Limits) of
        {ok, Head, Rest} -> request(C, Head, Rest);
        more -> head(C, Acc, Line, partial, Deadline);
        {error, Status, Reason} -> reject(C, Status, Reason, undefined)
    end.

parse_copy(#c{cfg = #{head_limits := Limits}} = C, Acc) ->
    case bodypipe_http_parser:parse_head(binary:copy(Acc), Limits) of
        more -> more;
        {error, Status, Reason} -> reject(C, Status, Reason, undefined);
        {ok, _, _} -> more   % cannot be: no empty line yet; parsed again at the end
    end.

%% ---------------------------------------------------------------------------
%% Before the body.

request(#c{cfg = Cfg} = C, #{method := Method, target := Target, version := Version} = Head,
        Rest) ->
    put(?REQUEST, Head),
    case bodypipe_http_target:parse(Method, Target) of
        {error, Reason} ->
            reject(C, 400, Reason, Version);
        {ok, #{path := Path} = Parsed} when map_get(admin, Cfg) ->
            case bodypipe_http_admin:handle(Method, Path, Cfg) of
                nomatch -> route(C, Head, Rest, Parsed);
                {Status, Type, Text} -> answer(C, Head, Rest, Status, Type, Text)
            end;
        {ok, Parsed} ->
            route(C, Head, Rest, Parsed)
    end.

route(#c{cfg = Cfg} = C, #{version := Version, body := Body} = Head, Rest,
      #{path := Path, query := Query}) ->
    #{mounts := Mounts, max_body := MaxBody} = Cfg,
    case bodypipe_http_target:route(Path, Mounts) of
        nomatch ->
            not_found(C, Head, Rest);
        {App, ScriptName, PathInfo} ->
            case {too_large(Body, MaxBody), has_body(Body)} of
                {true, _} ->
                    %% Refused before reading (and before 100 Continue).
                    reject(C, 413, body_too_large, Version);
                {false, true} ->
                    case acquire_reader(Cfg) of
                        true ->
                            start(C, Head, Rest, App, {ScriptName, PathInfo, Query});
                        false ->
                            reject(C, 503, too_many_body_readers, Version,
                                   [{<<"Retry-After">>, <<"1">>}])
                    end;
                {false, false} ->
                    start(C, Head, Rest, App, {ScriptName, PathInfo, Query})
            end
    end.

too_large({length, N}, Max) -> N > Max;
too_large(_, _Max) -> false.

has_body(chunked) -> true;
has_body({length, N}) -> N > 0;
has_body(none) -> false.

not_found(C, #{body := Body, version := Version, keep_alive := KeepAlive} = Head, Rest) ->
    case has_body(Body) orelse not KeepAlive of
        true ->
            reject(C, 404, no_mount, Version);
        false ->
            answer(C, Head, Rest, <<"404 Not Found">>, <<"text/plain; charset=utf-8">>,
                   <<"no application mounted here\n">>)
    end.

%% A response of the server's own to a request without a body (or, closing
%% the connection, with one: the body is not read). Not kept alive while the
%% server is shutting down.
answer(#c{cfg = Cfg} = C,
       #{body := Body, version := Version, keep_alive := KeepAlive, method := Method},
       Rest, Status, Type, Text0) ->
    Text = iolist_to_binary(Text0),
    Keep = KeepAlive andalso not has_body(Body)
               andalso not bodypipe_http_gate:draining(maps:get(gate, Cfg, none)),
    Headers = [{<<"Content-Type">>, Type},
               {<<"Content-Length">>, integer_to_binary(byte_size(Text))}],
    Framing = bodypipe_http_response:framing(Method, Version, Status, Headers),
    {Bytes, _, _} = bodypipe_http_response:body(Framing, Text),
    <<Code:3/binary, _/binary>> = Status,
    log(C, binary_to_integer(Code), byte_size(Text)),
    case gen_tcp:send(C#c.sock, [bodypipe_http_response:head(Status, Headers, Framing, Keep,
                                                             Version), Bytes]) of
        ok when Keep -> next_request(C, Rest);
        ok -> _ = gen_tcp:shutdown(C#c.sock, write), drain(C, deadline(?DRAIN_MS), ?DRAIN_BYTES);
        {error, _} -> close(C)
    end.

start(#c{sock = Sock, cfg = Cfg, info = Info} = C,
      #{method := Method, version := Version, body := Body, keep_alive := KeepAlive,
        expect_continue := Continue} = Head, Rest, App, Route) ->
    #{max_buffered := MaxBuffered, max_body := MaxBody, chunk_limits := ChunkLimits,
      app_timeout := AppTimeout} = Cfg,
    {Length, BodyState} = case Body of
                              none -> {0, done};
                              {length, 0} -> {0, done};
                              {length, N} -> {N, {fixed, N}};
                              chunked -> {undefined, {chunked, bodypipe_http_parser:chunked_new(ChunkLimits)}}
                          end,
    %% A buffer_chunked mount: the whole chunked body is read before the app
    %% is called (so it can be given a CONTENT_LENGTH), into an unbounded
    %% buffer (max_body still caps it), not a ring the app is not reading yet.
    Buffered = maps:get(buffer_chunked, App) andalso Body =:= chunked
                   andalso maps:get(interface, App) =:= wsgi,
    {ok, Buf} = case Buffered of
                    true -> py_buffer:new(#{max_size => MaxBody});
                    false -> py_buffer:new(#{content_length => Length, max_buffered => MaxBuffered,
                                             max_size => MaxBody})
                end,
    %% 100 Continue at body start: the request passed every check that does
    %% not need the body; the client has not sent any of it yet.
    _ = case Continue andalso Version =:= {1, 1} andalso BodyState =/= done andalso Rest =:= <<>> of
            true -> gen_tcp:send(Sock, <<"HTTP/1.1 100 Continue\r\n\r\n">>);
            false -> ok
        end,
    Token = case maps:get(interface, App) of
                asgi -> erlang:unique_integer([positive]);
                wsgi -> none
            end,
    Gate = maps:get(gate, Cfg, none),
    %% The gate is told after the call is queued: a stall probe that looks
    %% at the call pool just before it waits for the notice then sees it.
    Call = fun(H) ->
                   Started = call_app(App, H, Route, Buf, Info, Token),
                   ok = bodypipe_http_gate:call_started(Gate),
                   Started
           end,
    bodypipe_http_admin:track(maps:get(requests, Cfg, undefined), Method, maps:get(target, Head),
                              Buf, Length),
    X0 = #x{c = C, method = Method, target = maps:get(target, Head), version = Version,
            keep_alive = KeepAlive, buf = Buf,
            body = BodyState, app = done, app_deadline = deadline(AppTimeout), token = Token},
    X1 = case BodyState of
             done ->
                 _ = py_buffer:close(Buf),
                 X0#x{rest = Rest};
             _ ->
                 ChunkSize = maps:get(chunk_size, Cfg),
                 case ChunkSize > head_read(Cfg) of
                     true -> ok = setopts(Sock, [{buffer, ChunkSize}]), X0#x{big_reads = true};
                     false -> X0
                 end
         end,
    case Buffered of
        true ->
            X2 = X1#x{app = {deferred, Call, Head}},
            loop(case Rest of
                     <<>> -> arm(X2);
                     _ -> feed(X2, Rest)
                 end);
        false ->
            start_app(C, X1, Call(Head), BodyState, Rest)
    end.

%% The application's call: WSGI or ASGI (both answer as bodypipe_wsgi describes).
call_app(#{interface := asgi, name := Name}, Head, Route, Buf, Info, Token) ->
    Scope = bodypipe_asgi:scope(Head, Route, Info),
    bodypipe_asgi:run_async(Name, Scope#{<<"bodypipe.token">> => Token}, Buf);
call_app(#{name := Name}, Head, Route, Buf, Info, none) ->
    bodypipe_wsgi:run_async(Name, bodypipe_wsgi:environ(Head, Route, Buf, Info)).

start_app(#c{cfg = Cfg} = C, #x{buf = Buf, version = Version} = X1, Started, BodyState, Rest) ->
    case Started of
        {ok, Ref} ->
            X2 = X1#x{app = {run, Ref}},
            X3 = case BodyState of
                     done -> watch(X2);
                     _ when Rest =:= <<>> -> arm(X2);
                     _ -> feed(X2, Rest)
                 end,
            loop(X3);
        {error, Reason} ->
            logger:error("bodypipe_http: cannot call the Python host: ~tp", [Reason]),
            py_buffer:abort(Buf, host_failed),
            release_reader(Cfg),
            reject(C, 500, host_failed, Version)
    end.

%% ---------------------------------------------------------------------------
%% The exchange: body in, response out.

loop(#x{app = done} = X) ->
    finish(X);
loop(#x{c = #c{sock = Sock}, buf = Buf, app = App} = X) ->
    AppRef = case App of
                 {deferred, _, _} -> no_call_yet;
                 _ -> element(2, App)
             end,
    receive
        {tcp, Sock, Data} ->
            loop(data(X, Data));
        {tcp_closed, Sock} when X#x.watch =:= armed, X#x.sock =:= open ->
            loop(watch_closed(X));
        {tcp_error, Sock, _} when X#x.watch =:= armed, X#x.sock =:= open ->
            loop(watch_closed(X));
        {tcp_closed, Sock} ->
            loop(disconnected(X));
        {tcp_error, Sock, _} ->
            loop(disconnected(X));
        {py_buffer, Buf, _WritableOrClosed} ->
            loop(unblock(X));
        {py_buffer, _Old, _} ->
            %% A notice for an earlier request's buffer.
            loop(X);
        {AppRef, Result} ->
            loop(app_result(X, Result))
    after timeout(next_deadline(X)) ->
        loop(expired(X))
    end.

next_deadline(#x{body_deadline = B, app_deadline = A, drain_deadline = D}) ->
    min(B, min(A, D)).

%% Socket data: body bytes, or what is drained after an error.
data(#x{sock = draining, drain_left = Left} = X, Data) ->
    case Left - byte_size(Data) of
        L when L > 0 -> arm_drain(X#x{drain_left = L});
        _ -> close_socket(X)
    end;
data(#x{sock = open, body = {_, _}} = X, Data) ->
    feed(X#x{body_deadline = infinity}, Data);
data(#x{sock = open, watch = armed, rest = Rest, c = #c{sock = Sock, cfg = Cfg}} = X, Data) ->
    {Watch, Rest1} = bodypipe_http_watch:data(Sock, Data, {Rest, maps:get(max_head_size, Cfg)}),
    X#x{watch = Watch, rest = Rest1};
data(X, _Data) ->
    X.

feed(#x{body = {fixed, Left}} = X, Data) when byte_size(Data) > Left ->
    <<Part:Left/binary, Rest/binary>> = Data,
    write_fixed(X#x{rest = Rest}, Part);
feed(#x{body = {fixed, _}} = X, Data) ->
    write_fixed(X, Data);
feed(#x{body = {chunked, Dec}, buf = Buf} = X, Data) ->
    case bodypipe_http_parser:chunked_feed(Dec, Buf, Data) of
        more -> arm(X);
        {done, Rest} -> body_done(X#x{rest = Rest});
        {full, Rest} -> block(X, Rest);
        {error, closed} -> body_unread(X);
        {error, too_large} -> body_failed(X, 413, body_too_large);
        {error, {bad_chunk, Why}} ->
            logger:debug("bodypipe_http: bad chunked body: ~p", [Why]),
            body_failed(X, 400, bad_request_body);
        {error, Other} -> body_failed(X, 500, Other)
    end.

write_fixed(#x{body = {fixed, Left}, buf = Buf} = X, Part) ->
    case py_buffer:write(Buf, Part) of
        ok when byte_size(Part) =:= Left -> body_done(X);
        ok -> arm(X#x{body = {fixed, Left - byte_size(Part)}});
        {error, full} -> block(X, Part);
        {error, closed} -> body_unread(X);
        {error, Other} -> body_failed(X, 500, Other)
    end.

%% The buffer is full: wait for room without reading the socket. The socket
%% reads already copied into the buffer are garbage now, but a process that
%% only waits never collects, so each blocked connection would keep up to a
%% ring's worth of them alive besides the ring itself: they are dropped here,
%% and only the refused read (`Pending') stays.
block(#x{buf = Buf} = X, Pending) ->
    ok = py_buffer:notify_writable(Buf),
    garbage_collect(),
    X#x{blocked = Pending, body_deadline = infinity}.

unblock(#x{blocked = false} = X) ->
    X;
unblock(#x{blocked = Pending} = X) ->
    feed(X#x{blocked = false}, Pending).

arm(#x{c = #c{sock = Sock, cfg = #{body_timeout := T}}} = X) ->
    ok = setopts(Sock, [{active, once}]),
    X#x{body_deadline = deadline(T)}.

body_done(#x{buf = Buf, c = #c{cfg = Cfg}} = X) ->
    _ = py_buffer:close(Buf),
    release_reader(Cfg),
    watch(call_deferred(X#x{body = done, body_deadline = infinity})).

%% The body is complete, the application runs: watch the socket (see
%% bodypipe_http_watch) until it is done.
watch(#x{sock = open, watch = off, app = App, rest = Rest, c = #c{sock = Sock, cfg = Cfg}} = X)
  when App =/= done, element(1, App) =/= deferred ->
    X#x{watch = bodypipe_http_watch:arm(Sock, Rest, maps:get(max_head_size, Cfg))};
watch(X) ->
    X.

%% The client's stream ended while watched: a half-close (the response still
%% goes out) or a reset (the client is gone).
watch_closed(#x{c = #c{sock = Sock}} = X) ->
    case bodypipe_http_watch:closed(Sock) of
        eof -> X#x{watch = eof};
        gone -> client_gone(X#x{watch = off})
    end.

%% The client went away after its body, while the application runs: one
%% line in the log, the socket closed, an ASGI app told (its receive() yields
%% http.disconnect); a WSGI app's response will be dropped.
client_gone(#x{method = Method, target = Target, token = Token} = X) ->
    logger:notice("bodypipe_http: ~ts ~ts: client went away while the application was running",
                  [Method, Target]),
    ok = bodypipe_asgi:disconnect(Token),
    close_socket(X).

%% A buffer_chunked mount: the body is all there, the app is called with its
%% length (its environ has CONTENT_LENGTH and, as always, no
%% HTTP_TRANSFER_ENCODING: the app reads the de-chunked bytes).
call_deferred(#x{app = {deferred, Call, Head}, buf = Buf} = X) ->
    #{written := N} = py_buffer:info(Buf),
    case Call(Head#{body := {length, N}}) of
        {ok, Ref} ->
            X#x{app = {run, Ref}};
        {error, Reason} ->
            logger:error("bodypipe_http: cannot call the Python host: ~tp", [Reason]),
            fail(X#x{app = done}, 500, host_failed)
    end;
call_deferred(X) ->
    X.

%% The body ended badly before a buffer_chunked app was called: it never is.
not_called(#x{app = {deferred, _, _}} = X) -> X#x{app = done};
not_called(X) -> X.

%% The application closed wsgi.input: the rest of the body is not read.
body_unread(#x{c = #c{cfg = Cfg}} = X) ->
    release_reader(Cfg),
    X#x{body = unread, blocked = false, body_deadline = infinity, close = true}.

%% The body cannot be read to its end: the application's reads raise
%% BodyAborted(Reason); the client gets Status if nothing was sent yet.
body_failed(#x{buf = Buf, c = #c{cfg = Cfg}} = X, Status, Reason) ->
    py_buffer:abort(Buf, Reason),
    release_reader(Cfg),
    fail(not_called(X#x{body = failed, blocked = false, body_deadline = infinity}), Status, Reason).

%% The client went away mid-body: one line in the log, no error response
%% (there is nobody to read it); the app's reads raise BodyAborted, which the
%% hosts treat as the end of the request, not as the app's error.
disconnected(#x{body = {_, _}, buf = Buf, c = #c{cfg = Cfg}, method = Method, target = Target} = X) ->
    #{written := N} = py_buffer:info(Buf),
    logger:notice("bodypipe_http: ~ts ~ts: client went away after ~b bytes of the request body",
                  [Method, Target, N]),
    py_buffer:abort(Buf, client_disconnected),
    release_reader(Cfg),
    close_socket(not_called(X#x{body = disconnected, blocked = false, body_deadline = infinity}));
disconnected(X) ->
    close_socket(X).

%% Answer Status and close, or, once the response has started, cut it short.
fail(#x{resp = none, sock = open, version = Version} = X, Status, Reason) ->
    logger:debug("bodypipe_http: ~b (~p)", [Status, Reason]),
    X1 = send(X#x{resp = over, close = true, status = Status},
              bodypipe_http_response:error_response(Status, Version)),
    start_drain(X1);
fail(#x{resp = {sent, _}} = X, _Status, Reason) ->
    logger:debug("bodypipe_http: response cut short (~p)", [Reason]),
    close_socket(X#x{resp = over, close = true});
fail(X, _Status, _Reason) ->
    X#x{close = true}.

expired(X) ->
    Now = erlang:monotonic_time(millisecond),
    X1 = case X#x.body_deadline =< Now of
             true -> body_failed(X, 408, body_timeout);
             false -> X
         end,
    X2 = case X1#x.app_deadline =< Now of
             true -> app_timeout(X1);
             false -> X1
         end,
    case X2#x.drain_deadline =< Now of
        true -> close_socket(X2);
        false -> X2
    end.

%% The application took longer than app_timeout: its body is aborted, the
%% client gets 503 if nothing was sent, and the connection closes now. An
%% ASGI app's task is cancelled (CancelledError at its current await); a
%% WSGI call cannot be stopped and goes on in its thread. Either way the
%% result is still awaited so the iterable is closed.
app_timeout(#x{token = Token} = X) ->
    ok = bodypipe_asgi:cancel(Token),
    app_timed_out(X).

app_timed_out(#x{body = {_, _}} = X) ->
    app_timed_out(body_failed(X, 503, app_timeout));
app_timed_out(#x{resp = none, sock = open, version = Version} = X) ->
    X1 = send(X#x{resp = over, status = 503},
              bodypipe_http_response:error_response(503, Version)),
    close_socket(X1#x{app_deadline = infinity, close = true});
app_timed_out(X) ->
    close_socket(X#x{app_deadline = infinity, resp = over, close = true}).

%% ---------------------------------------------------------------------------
%% The application's results.

app_result(#x{app = {run, _}} = X, Result) ->
    case bodypipe_wsgi:run_result(Result) of
        {ok, {_, _, _, More}} when X#x.resp =/= none; X#x.sock =/= open ->
            %% Too late (an error was answered, or the client is gone).
            bodypipe_wsgi:close(More),
            X#x{app = done};
        {ok, Response} ->
            respond(X, Response);
        {error, Reason} ->
            logger:error("bodypipe_http: WSGI host failed: ~tp", [Reason]),
            fail(X#x{app = done}, 500, host_failed)
    end;
app_result(#x{app = {step, _, More}} = X, Result) ->
    case bodypipe_wsgi:next_result(Result) of
        {ok, _Block} when X#x.resp =:= over; X#x.sock =/= open ->
            bodypipe_wsgi:close(More),
            X#x{app = done};
        {ok, Block} ->
            {sent, Framing} = X#x.resp,
            blocks(X, Framing, [Block], More);
        done ->
            complete(X#x{app = done});
        {error, Reason} ->
            %% The headers are out: all that can be done is to cut the
            %% response short (the host has closed the iterable).
            logger:error("bodypipe_http: response iterable failed: ~tp", [Reason]),
            close_socket(X#x{app = done, resp = over, close = true})
    end.

respond(#x{method = Method, version = Version, keep_alive = KeepAlive0, c = #c{cfg = Cfg}} = X,
        {Status, Headers, Chunks, More}) ->
    Framing = bodypipe_http_response:framing(Method, Version, Status, Headers),
    %% Kept alive only if the body has been read to its end by now, the
    %% response can be delimited without closing and the server is not
    %% shutting down.
    KeepAlive = KeepAlive0 andalso X#x.body =:= done andalso not X#x.close
                    andalso Framing =/= close
                    andalso not bodypipe_http_gate:draining(maps:get(gate, Cfg, none)),
    HeadBytes = bodypipe_http_response:head(Status, Headers, Framing, KeepAlive, Version),
    <<Code:3/binary, _/binary>> = Status,
    X1 = X#x{close = not KeepAlive, status = binary_to_integer(Code)},
    blocks(X1, Framing, Chunks, More, HeadBytes).

blocks(X, Framing, Blocks, More) ->
    blocks(X, Framing, Blocks, More, []).

%% Sends `Blocks' (with `Prefix' first) in one write, within the
%% application's Content-Length; then asks for the next block.
blocks(X, Framing, Blocks, More, Prefix) ->
    {Out, Framing1, Dropped} = frame(Framing, Blocks, [], 0),
    Sent = case Framing of
               none -> 0;
               _ -> lists:sum([byte_size(B) || B <- Blocks]) - Dropped
           end,
    X1 = sent(send(X#x{resp = {sent, Framing1}}, [Prefix | Out]), X, Sent, Prefix),
    if
        X1#x.sock =/= open ->
            bodypipe_wsgi:close(More),
            X1#x{app = done};
        Dropped > 0 ->
            logger:warning("bodypipe_http: response longer than its Content-Length: "
                           "~b bytes dropped, connection closed", [Dropped]),
            bodypipe_wsgi:close(More),
            X1#x{app = done, resp = over, close = true};
        More =:= none ->
            complete(X1#x{app = done});
        Framing1 =:= none ->
            %% HEAD, 204, 304: no body is sent, so the iterable is not stepped.
            bodypipe_wsgi:close(More),
            complete(X1#x{app = done});
        true ->
            case bodypipe_wsgi:next_async(More) of
                {ok, Ref} ->
                    X1#x{app = {step, Ref, More}};
                {error, Reason} ->
                    logger:error("bodypipe_http: cannot step the response: ~tp", [Reason]),
                    bodypipe_wsgi:close(More),
                    close_socket(X1#x{app = done, resp = over, close = true})
            end
    end.

%% The access log counts what was sent: nothing (status "-") if the head
%% could not be, the blocks that went out otherwise.
sent(#x{sock = open} = X1, X, Sent, _Prefix) -> X1#x{sent = X#x.sent + Sent};
sent(X1, #x{sock = open}, _Sent, Prefix) when Prefix =/= [] -> X1#x{status = none};
sent(X1, _X, _Sent, _Prefix) -> X1.

frame(Framing, [], Acc, Dropped) ->
    {lists:reverse(Acc), Framing, Dropped};
frame(Framing, [Block | Blocks], Acc, Dropped) ->
    {Out, Framing1, D} = bodypipe_http_response:body(Framing, Block),
    frame(Framing1, Blocks, [Out | Acc], Dropped + D).

%% The iterable is exhausted: end the body. A body shorter than the
%% application's Content-Length can only be signalled by closing.
complete(#x{resp = {sent, {length, Left}}} = X) when Left > 0 ->
    logger:warning("bodypipe_http: response ~b bytes shorter than its Content-Length, "
                   "connection closed", [Left]),
    close_socket(X#x{resp = over, close = true});
complete(#x{resp = {sent, Framing}} = X) ->
    X1 = send(X, bodypipe_http_response:finish(Framing)),
    X1#x{resp = over};
complete(X) ->
    %% The response was already cut short or answered with an error.
    X.

%% ---------------------------------------------------------------------------
%% After the exchange.

finish(#x{c = #c{cfg = Cfg} = C, status = Status, sent = Sent} = X) ->
    %% The application is done with the body, read or not.
    release_reader(Cfg),
    bodypipe_http_admin:untrack(maps:get(requests, Cfg, undefined)),
    log(C, Status, Sent),
    finish_connection(X).

finish_connection(#x{sock = closed}) ->
    ok;
finish_connection(#x{watch = armed, rest = Rest, c = #c{sock = Sock}} = X) ->
    finish_connection(X#x{watch = off, rest = bodypipe_http_watch:stop(Sock, Rest)});
finish_connection(#x{close = false, body = done, resp = over, sock = open, rest = Rest,
                     c = #c{sock = Sock, cfg = Cfg} = C, big_reads = Big}) ->
    _ = case Big of
            true -> setopts(Sock, [{buffer, head_read(Cfg)}]);
            false -> ok
        end,
    next_request(C, Rest);
finish_connection(X) ->
    linger_close(X).

send(#x{sock = open, c = #c{sock = Sock}} = X, Data) ->
    case gen_tcp:send(Sock, Data) of
        ok ->
            X;
        {error, _} ->
            %% The client stopped reading (send_timeout) or went away.
            X1 = case X#x.body of
                     {_, _} -> disconnected(X);
                     _ -> X
                 end,
            close_socket(X1#x{resp = over, close = true})
    end;
send(X, _Data) ->
    X.

%% Stop sending and read (and drop) what the client still sends for a while,
%% so that it reads the response instead of a connection reset.
start_drain(#x{sock = open, c = #c{sock = Sock}} = X) ->
    _ = gen_tcp:shutdown(Sock, write),
    %% The drain reads (and drops) from here on: no more watching.
    arm_drain(X#x{sock = draining, watch = off, drain_left = ?DRAIN_BYTES, drain_deadline = deadline(?DRAIN_MS)});
start_drain(X) ->
    X.

arm_drain(#x{c = #c{sock = Sock}} = X) ->
    case setopts(Sock, [{active, once}]) of
        ok -> X;
        {error, _} -> close_socket(X)
    end.

close_socket(#x{sock = closed} = X) ->
    X;
close_socket(#x{c = #c{sock = Sock}} = X) ->
    _ = gen_tcp:close(Sock),
    X#x{sock = closed, drain_deadline = infinity, close = true}.

%% The end of a connection whose request was not read to its end (or that
%% must not be reused): drain for a bounded time, then close.
linger_close(#x{sock = draining, c = C, drain_deadline = Deadline, drain_left = Left}) ->
    drain(C, Deadline, Left);
linger_close(#x{sock = open, c = #c{sock = Sock} = C}) ->
    _ = setopts(Sock, [{active, false}]),
    _ = gen_tcp:shutdown(Sock, write),
    drain(C, deadline(?DRAIN_MS), ?DRAIN_BYTES).

drain(#c{sock = Sock} = C, Deadline, Left) ->
    _ = setopts(Sock, [{active, false}]),
    receive {tcp, Sock, _} -> ok after 0 -> ok end,
    case Left > 0 andalso gen_tcp:recv(Sock, 0, timeout(Deadline)) of
        {ok, Data} -> drain(C, Deadline, Left - byte_size(Data));
        _ -> close(C)
    end.

%% An error answered before (or instead of) the application: the connection
%% closes after it.
reject(C, Status, Reason, Version) ->
    reject(C, Status, Reason, Version, []).

reject(#c{sock = Sock} = C, Status, Reason, Version, Extra) ->
    logger:debug("bodypipe_http: ~b (~p)", [Status, Reason]),
    log(C, Status, byte_size(bodypipe_http_response:reason(Status)) + 1),
    case gen_tcp:send(Sock, bodypipe_http_response:error_response(Status, Version, Extra)) of
        ok ->
            _ = gen_tcp:shutdown(Sock, write),
            drain(C, deadline(?DRAIN_MS), ?DRAIN_BYTES);
        {error, _} ->
            close(C)
    end.

close(#c{sock = Sock}) ->
    _ = gen_tcp:close(Sock),
    ok.

%% ---------------------------------------------------------------------------
%% Helpers.

%% One access-log line for the request in progress (`Status' none: nothing
%% was answered); a request whose head could not be parsed is logged as "-".
log(#c{cfg = Cfg, info = Info}, Status, Bytes) ->
    case maps:get(access_log, Cfg, none) of
        none ->
            _ = erase(?REQUEST),
            ok;
        Log ->
            Base = #{remote => maps:get(remote_addr, Info, <<"-">>), status => Status,
                     bytes => Bytes},
            Entry = case erase(?REQUEST) of
                        #{method := M, target := T, version := V, headers := H} ->
                            Base#{method => M, target => T, version => V,
                                  referer => header(<<"referer">>, H),
                                  user_agent => header(<<"user-agent">>, H)};
                        undefined ->
                            Base#{method => none, target => <<>>, version => {1, 1},
                                  referer => none, user_agent => none}
                    end,
            bodypipe_http_access_log:request(Log, Entry)
    end.

header(Name, Headers) ->
    case lists:keyfind(Name, 1, Headers) of
        {_, Value} -> Value;
        false -> none
    end.

setopts(Sock, Opts) ->
    inet:setopts(Sock, Opts).

%% @private The socket reads of the head phase.
head_read(#{chunk_size := ChunkSize}) ->
    min(?HEAD_READ, ChunkSize).

deadline(infinity) -> infinity;
deadline(Ms) -> erlang:monotonic_time(millisecond) + Ms.

timeout(infinity) -> infinity;
timeout(Deadline) -> max(0, Deadline - erlang:monotonic_time(millisecond)).

%% A body-reader slot: requests with a body hold one from their start until
%% the body has been read (or abandoned), so at most max_body_readers pool
%% threads can be blocked on client bodies and the others stay free.
acquire_reader(#{counters := Counters, max_body_readers := Max}) ->
    case atomics:add_get(Counters, ?BODY_READERS, 1) of
        N when N > Max ->
            atomics:sub(Counters, ?BODY_READERS, 1),
            false;
        _ ->
            put(?SLOT, true),
            true
    end.

release_reader(#{counters := Counters}) ->
    case erase(?SLOT) of
        true -> atomics:sub(Counters, ?BODY_READERS, 1);
        undefined -> ok
    end.
