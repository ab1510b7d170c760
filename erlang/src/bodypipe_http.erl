%% @doc An HTTP server (mochiweb) that streams request bodies into WSGI
%% applications running in the embedded Python, chunk by chunk as they arrive.
%%
%% Per request, the connection process creates a ring-mode `py_buffer'
%% (`max_buffered' bounded, with the Content-Length when there is one), spawns
%% a linked feeder process that reads the body with mochiweb's
%% `stream_body' (fixed-length or chunked) and writes it into the buffer, and
%% meanwhile calls the application (`bodypipe_wsgi:run/2', on a thread of the
%% `py' pool) with the buffer as `wsgi.input'. While the buffer is full the
%% feeder stops reading the socket (TCP flow control reaches the client) and
%% resumes on `{py_buffer, Buf, writable}'. At the end of the body the buffer is
%% closed; if the client disconnects it is aborted (the application's reads raise
%% `BodyAborted'). The connection process then sends the status, the headers and
%% the body blocks, stepping the response iterable one block at a time.
%%
%% Bodies above `max_body' get `413': at once when the Content-Length says so,
%% or when a chunked body grows past it (the buffer's `max_size').
-module(bodypipe_http).

-export([start/1, start_link/1, stop/1, port/1, default_options/0]).
-export([loop/2, feeder/5]).

-export_type([options/0]).

-type options() :: #{name => atom(),
                     ip => inet:ip_address(),
                     port => inet:port_number(),
                     apps => [{Prefix :: binary(), AppSpec :: binary()}],
                     python_path => [file:filename_all()],
                     validate => boolean(),
                     max_body => non_neg_integer(),
                     max_buffered => pos_integer(),
                     chunk_size => pos_integer(),
                     max_connections => pos_integer(),
                     acceptors => pos_integer()}.
%% `apps': WSGI callables (`<<"module:attr">>') mounted at path prefixes
%% (`<<"">>' is the root; the longest prefix wins; the prefix becomes
%% `SCRIPT_NAME'). `python_path': directories put on `sys.path' first.
%% `validate': wrap every app in `wsgiref.validate.validator'. `max_body':
%% larger bodies get 413. `max_buffered': the ring buffer's bound per request.
%% `chunk_size': the largest socket read.

-type config() :: #{mounts := [{binary(), binary()}],
                    max_body := non_neg_integer(),
                    max_buffered := pos_integer(),
                    chunk_size := pos_integer()}.

-type body_state() :: done | streaming | unread | too_large | disconnected | {error, term()}.

-define(RECV_KEY, mochiweb_request_recv).   % mochiweb: "the body was read", keeps the connection alive

%% @doc The defaults: `bodypipe_http' on 127.0.0.1:8080, 1 MiB buffered per
%% request, 64 KiB reads, bodies up to 4 GiB.
-spec default_options() -> options().
default_options() ->
    #{name => bodypipe_http,
      ip => {127, 0, 0, 1},
      port => 8080,
      apps => [],
      python_path => [],
      validate => false,
      max_body => 4 bsl 30,
      max_buffered => 1 bsl 20,
      chunk_size => 64 * 1024,
      max_connections => 4096,
      acceptors => 32}.

%% @doc Starts a server (not linked); see `options()'.
-spec start(options()) -> {ok, pid()} | {error, term()}.
start(Opts) ->
    do_start(start, Opts).

%% @doc Starts a server linked to the caller.
-spec start_link(options()) -> {ok, pid()} | {error, term()}.
start_link(Opts) ->
    do_start(start_link, Opts).

%% @doc Stops the server registered as `Name'.
-spec stop(atom()) -> ok.
stop(Name) ->
    mochiweb_http:stop(Name).

%% @doc The port the server `Name' listens on (useful with `port => 0').
-spec port(atom()) -> inet:port_number().
port(Name) ->
    mochiweb_socket_server:get(Name, port).

-spec do_start(start | start_link, options()) -> {ok, pid()} | {error, term()}.
do_start(How, Opts0) ->
    Opts = maps:merge(default_options(), Opts0),
    #{name := Name, ip := IP, port := Port, apps := Apps, python_path := PyPath,
      validate := Validate, max_body := MaxBody, max_buffered := MaxBuffered,
      chunk_size := ChunkSize, max_connections := MaxConns, acceptors := Acceptors} = Opts,
    {ok, _} = application:ensure_all_started(bodypipe),
    maybe_ok(bodypipe_wsgi:setup(PyPath), fun() ->
        %% Python registers each app as "Server Prefix" (several servers may run).
        Loaded = [{normalize_prefix(P), AppName, bodypipe_wsgi:load(AppName, Spec, Validate)}
                  || {P, Spec} <- Apps,
                     AppName <- [<<(atom_to_binary(Name))/binary, " ", (normalize_prefix(P))/binary>>]],
        case [{P, E} || {P, _, {error, _} = E} <- Loaded] of
            [] ->
                Mounts = lists:sort(fun({A, _}, {B, _}) -> byte_size(A) >= byte_size(B) end,
                                    [{P, AppName} || {P, AppName, ok} <- Loaded]),
                Cfg = #{mounts => Mounts, max_body => MaxBody, max_buffered => MaxBuffered,
                        chunk_size => ChunkSize},
                Loop = fun(Req) -> ?MODULE:loop(Req, Cfg) end,
                Link = [{link, false} || How =:= start],
                mochiweb_http:How(Link ++ [{name, Name}, {ip, IP}, {port, Port}, {loop, Loop},
                                   %% recbuf undefined: the kernel sizes the socket buffer,
                                   %% and stream_body reads up to chunk_size at a time.
                                   {recbuf, undefined}, {nodelay, true}, {backlog, 1024},
                                   {max, MaxConns}, {acceptor_pool_size, Acceptors}]);
            Errors ->
                {error, {load_failed, Errors}}
        end
    end).

-spec maybe_ok(ok | {error, term()}, fun(() -> {ok, pid()} | {error, term()})) ->
          {ok, pid()} | {error, term()}.
maybe_ok(ok, Fun) -> Fun();
maybe_ok({error, _} = E, _Fun) -> E.

-spec normalize_prefix(iodata()) -> binary().
normalize_prefix(P0) ->
    %% "" or "/" is the root; "/x/" is "/x".
    P = iolist_to_binary(P0),
    Size = byte_size(P),
    case Size > 0 andalso binary:last(P) =:= $/ of
        true -> normalize_prefix(binary:part(P, 0, Size - 1));
        false -> P
    end.

%% @doc The mochiweb loop: one call per request.
-spec loop(bodypipe_wsgi:request(), config()) -> ok.
loop(Req, #{mounts := Mounts, max_body := MaxBody} = Cfg) ->
    RawPath = mochiweb_request:get(raw_path, Req),
    {Path, _, _} = mochiweb_util:urlsplit_path(RawPath),
    case route(list_to_binary(Path), Mounts) of
        nomatch ->
            simple(Req, 404, <<"no application mounted here\n">>);
        {App, Script, PathInfo} ->
            case body_length(Req) of
                {ok, N} when is_integer(N), N > MaxBody ->
                    %% Refused before reading (and before `100 Continue').
                    simple(Req, 413, <<"request body too large\n">>),
                    linger_close(Req);
                {ok, Length} ->
                    serve(Req, App, Script, PathInfo, Length, Cfg);
                {error, bad_length} ->
                    simple(Req, 400, <<"bad Content-Length\n">>),
                    linger_close(Req);
                {error, unknown_transfer_encoding} ->
                    simple(Req, 501, <<"unsupported Transfer-Encoding\n">>),
                    linger_close(Req)
            end
    end.

-spec route(binary(), [{binary(), binary()}]) -> nomatch | {binary(), binary(), binary()}.
route(_Path, []) ->
    nomatch;
route(Path, [{Prefix, App} | Rest]) ->
    N = byte_size(Prefix),
    case Path of
        <<Prefix:N/binary>> ->
            {App, Prefix, <<>>};
        <<Prefix:N/binary, $/, _/binary>> ->
            {App, Prefix, unquote(binary:part(Path, N, byte_size(Path) - N))};
        _ ->
            route(Path, Rest)
    end.

-spec unquote(binary()) -> binary().
unquote(Bin) ->
    list_to_binary(mochiweb_util:unquote(binary_to_list(Bin))).

-spec body_length(bodypipe_wsgi:request()) ->
          {ok, none | chunked | non_neg_integer()} | {error, bad_length | unknown_transfer_encoding}.
body_length(Req) ->
    try mochiweb_request:get(body_length, Req) of
        undefined -> {ok, none};
        chunked -> {ok, chunked};
        N when is_integer(N), N >= 0 -> {ok, N};
        {unknown_transfer_encoding, _} -> {error, unknown_transfer_encoding};
        _ -> {error, bad_length}
    catch
        error:_ -> {error, bad_length}
    end.

-spec serve(bodypipe_wsgi:request(), binary(), binary(), binary(), none | chunked | non_neg_integer(),
            config()) -> ok.
serve(Req, App, Script, PathInfo, Length,
      #{max_body := MaxBody, max_buffered := MaxBuffered, chunk_size := ChunkSize}) ->
    ContentLength = case Length of
                        none -> 0;
                        chunked -> undefined;
                        N -> N
                    end,
    {ok, Buf} = py_buffer:new(#{content_length => ContentLength, max_buffered => MaxBuffered,
                                max_size => MaxBody}),
    Feeder = case ContentLength of
                 0 -> undefined;
                 _ -> start_feeder(Req, Buf, ChunkSize)
             end,
    Env = bodypipe_wsgi:environ(Req, Script, PathInfo, Buf, server(Req)),
    Result = bodypipe_wsgi:run(App, Env),
    Body = body_state(Feeder, Buf),
    case {Body, Result} of
        {disconnected, _} ->
            close_response(Result),
            mochiweb_socket:close(mochiweb_request:get(socket, Req)),
            exit({shutdown, client_disconnected});
        {too_large, _} ->
            close_response(Result),
            simple(Req, 413, <<"request body too large\n">>),
            linger_close(Req, Feeder);
        {_, {error, Reason}} ->
            logger:error("bodypipe_http: WSGI host failed: ~tp", [Reason]),
            simple(Req, 500, <<"Internal Server Error\n">>),
            finish(Req, Body, Feeder);
        {_, {ok, Response}} ->
            case Body of
                done -> put(?RECV_KEY, true);
                _ -> ok
            end,
            ok = send_response(Req, Response),
            finish(Req, Body, Feeder)
    end.

-spec server(bodypipe_wsgi:request()) ->
          #{server_name := binary(), server_port := inet:port_number()}.
server(Req) ->
    Sockname = case mochiweb_request:get(socket, Req) of
                   {ssl, S} -> ssl:sockname(S);
                   S -> inet:sockname(S)
               end,
    case Sockname of
        {ok, {Addr, Port}} -> #{server_name => list_to_binary(inet:ntoa(Addr)), server_port => Port};
        {error, _} -> #{server_name => <<"localhost">>, server_port => 0}
    end.

-spec close_response({ok, bodypipe_wsgi:response()} | {error, term()}) -> ok.
close_response({ok, {_, _, _, More}}) -> bodypipe_wsgi:close(More);
close_response(_) -> ok.

%% After the response: keep the connection when the whole body was read,
%% otherwise close it (after draining what the client is still sending).
-spec finish(bodypipe_wsgi:request(), body_state(), undefined | {pid(), reference()}) -> ok.
finish(_Req, done, _Feeder) ->
    ok;
finish(Req, _Body, Feeder) ->
    linger_close(Req, Feeder).

%% ---------------------------------------------------------------------------
%% The body: a feeder process reads the socket and writes the buffer.

-spec start_feeder(bodypipe_wsgi:request(), py_buffer:buffer(), pos_integer()) -> {pid(), reference()}.
start_feeder(Req, Buf, ChunkSize) ->
    Ref = make_ref(),
    Pid = proc_lib:spawn_link(?MODULE, feeder, [self(), Ref, Req, Buf, ChunkSize]),
    {Pid, Ref}.

%% @private The feeder process: reads the body with `stream_body', writes it
%% into `Buf', then closes (or aborts) the buffer and reports to `Parent'.
-spec feeder(pid(), reference(), bodypipe_wsgi:request(), py_buffer:buffer(), pos_integer()) -> ok.
feeder(Parent, Ref, Req, Buf, ChunkSize) ->
    %% So that a `100 Continue' sent by stream_body does not say "Connection: close".
    put(?RECV_KEY, true),
    Result = try mochiweb_request:stream_body(ChunkSize, fun write_chunk/2, Buf, Req) of
                 _ -> done
             catch
                 throw:{?MODULE, R} -> R;
                 exit:{body_too_large, _} -> too_large;
                 exit:normal -> disconnected;
                 exit:{shutdown, _} -> disconnected;
                 Class:Reason -> {error, {Class, Reason}}
             end,
    case Result of
        done -> py_buffer:close(Buf);
        unread -> ok;
        too_large -> py_buffer:abort(Buf, body_too_large);
        disconnected -> py_buffer:abort(Buf, client_disconnected);
        {error, E} -> py_buffer:abort(Buf, E)
    end,
    Parent ! {Ref, Result},
    ok.

-spec write_chunk({non_neg_integer(), binary() | [binary()]}, py_buffer:buffer()) -> py_buffer:buffer().
write_chunk({0, _Footers}, Buf) ->
    Buf;
write_chunk({_Length, Data}, Buf) ->
    ok = write_all(Buf, Data),
    Buf.

-spec write_all(py_buffer:buffer(), binary()) -> ok.
write_all(Buf, Data) ->
    case py_buffer:write(Buf, Data) of
        ok ->
            ok;
        {error, full} ->
            %% Stop reading the socket until the application has read half of it.
            ok = py_buffer:notify_writable(Buf),
            receive
                {py_buffer, Buf, writable} -> write_all(Buf, Data);
                {py_buffer, Buf, closed} -> write_all(Buf, Data)
            end;
        {error, closed} ->
            %% The application closed wsgi.input (or its response is done).
            throw({?MODULE, unread});
        {error, too_large} ->
            throw({?MODULE, too_large});
        {error, Other} ->
            throw({?MODULE, {error, Other}})
    end.

%% What the feeder has done by the time the application returned.
-spec body_state(undefined | {pid(), reference()}, py_buffer:buffer()) -> body_state().
body_state(undefined, _Buf) ->
    done;
body_state({_Pid, Ref}, Buf) ->
    receive
        {Ref, Result} -> Result
    after 0 ->
        case py_buffer:info(Buf) of
            #{eof := false, aborted := false, writer_closed := false} ->
                streaming;   % the application answers before the end of the body
            _ ->
                %% The last byte is in: the feeder is about to report.
                receive {Ref, Result} -> Result after 5000 -> streaming end
        end
    end.

%% ---------------------------------------------------------------------------
%% The response.

-spec send_response(bodypipe_wsgi:request(), bodypipe_wsgi:response()) -> ok.
send_response(Req, {Status, Headers, Chunks, none}) ->
    _ = mochiweb_request:respond({Status, Headers, Chunks}, Req),
    ok;
send_response(Req, {Status, Headers, Chunks, More}) ->
    try
        {Send, Finish} =
            case has_content_length(Headers) of
                true ->
                    %% The application set the length: send its blocks as they are.
                    Resp = mochiweb_request:start_response({Status, Headers}, Req),
                    {fun(Data) -> mochiweb_response:send(Data, Resp) end, fun() -> ok end};
                false ->
                    %% Chunked (HTTP/1.1) or close-delimited (HTTP/1.0), by mochiweb.
                    Resp = mochiweb_request:respond({Status, Headers, chunked}, Req),
                    {fun(Data) -> mochiweb_response:write_chunk(Data, Resp) end,
                     fun() -> mochiweb_response:write_chunk(<<>>, Resp) end}
            end,
        _ = [Send(C) || C <- Chunks, C =/= <<>>],
        ok = stream(More, Send),
        _ = Finish(),
        ok
    catch
        Class:Reason:Stack ->
            bodypipe_wsgi:close(More),
            erlang:raise(Class, Reason, Stack)
    end.

-spec stream(py:pyobj(), fun((binary()) -> term())) -> ok.
stream(More, Send) ->
    case bodypipe_wsgi:next(More) of
        {ok, Data} ->
            _ = Send(Data),
            stream(More, Send);
        done ->
            ok;
        {error, Reason} ->
            %% Headers are out: all we can do is cut the response short.
            logger:error("bodypipe_http: response iterable failed: ~tp", [Reason]),
            exit({shutdown, {app_error, Reason}})
    end.

-spec has_content_length([{binary(), binary()}]) -> boolean().
has_content_length(Headers) ->
    lists:any(fun({K, _}) -> string:lowercase(K) =:= <<"content-length">> end, Headers).

-spec simple(bodypipe_wsgi:request(), 100..599, binary()) -> ok.
simple(Req, Code, Text) ->
    _ = mochiweb_request:respond({Code, [{<<"Content-Type">>, <<"text/plain">>}], Text}, Req),
    ok.

%% Close a connection whose request body was not read to the end: stop the
%% feeder, send FIN, and drain what the client is still sending for a while
%% (at most 2 s or 64 MiB) so that it reads the response instead of a reset.
-spec linger_close(bodypipe_wsgi:request()) -> no_return().
linger_close(Req) ->
    linger_close(Req, undefined).

-spec linger_close(bodypipe_wsgi:request(), undefined | {pid(), reference()}) -> no_return().
linger_close(Req, Feeder) ->
    case Feeder of
        {Pid, _} -> unlink(Pid), exit(Pid, kill);
        undefined -> ok
    end,
    Socket = mochiweb_request:get(socket, Req),
    _ = gen_tcp:shutdown(Socket, write),
    Deadline = erlang:monotonic_time(millisecond) + 2000,
    drain(Socket, Deadline, 64 bsl 20),
    mochiweb_socket:close(Socket),
    exit({shutdown, body_not_read}).

-spec drain(port(), integer(), integer()) -> ok.
drain(_Socket, _Deadline, Left) when Left =< 0 ->
    ok;
drain(Socket, Deadline, Left) ->
    Wait = Deadline - erlang:monotonic_time(millisecond),
    case Wait > 0 andalso gen_tcp:recv(Socket, 0, Wait) of
        {ok, Data} -> drain(Socket, Deadline, Left - byte_size(Data));
        _ -> ok
    end.
