%% @doc An HTTP/1.1 server that streams request bodies into WSGI applications
%% running in the embedded Python, chunk by chunk as they arrive.
%%
%% The server is a listener and a pool of `gen_tcp' acceptors under one
%% supervisor (`bodypipe_http_server'); each connection is one process
%% (`bodypipe_http_conn') that owns its socket, reads the request head with the
%% `bodypipe_http_parser' NIF (httparse), streams the body into a ring-mode
%% `py_buffer' (fixed-length writes, or the NIF's chunked decoder) while the
%% application runs on a thread of the `py' pool, and sends the response. Every
%% size, count and time it accepts from a client is one of the options below.
%%
%% ```
%% {ok, _} = bodypipe_http:start(#{port => 8080, python_path => ["demo"],
%%                                 apps => [{<<"">>, <<"demo_app:application">>}]}),
%% 8080 = bodypipe_http:port(bodypipe_http),
%% ok = bodypipe_http:stop(bodypipe_http).
%% '''
-module(bodypipe_http).

-export([start/1, start_link/1, stop/1, port/1, info/1, requests/1, lifespan_shutdown/1,
         default_options/0]).

-export_type([options/0, config/0, mount/0, mount_option/0, app/0]).

-type mount() :: {Prefix :: unicode:chardata(), AppSpec :: unicode:chardata()}
               | {Prefix :: unicode:chardata(), AppSpec :: unicode:chardata(), [mount_option()]}.
%% An application mounted at a path prefix. `AppSpec' is `"module:callable"'
%% (a binary or an Erlang string).

-type mount_option() :: {interface, wsgi | asgi} | buffer_chunked | {buffer_chunked, boolean()}.
%% Per mount: `{interface, asgi}' serves an ASGI 3 app (default `wsgi');
%% `buffer_chunked' (WSGI only) reads a chunked body to its end, up to
%% `max_body', before calling the app, which then gets `CONTENT_LENGTH' (for
%% frameworks that read no body without one: Django, Falcon, Bottle).

-type app() :: #{name := binary(), interface := wsgi | asgi, buffer_chunked := boolean()}.
%% A loaded mount, as the routing gives it to the connection.

-type options() :: #{name => atom(),
                     ip => inet:ip_address(),
                     port => inet:port_number(),
                     reuseport => boolean(),
                     fd => none | non_neg_integer() | {non_neg_integer(), inet | inet6},
                     backlog => pos_integer(),
                     apps => [mount()],
                     python_path => [file:filename_all()],
                     validate => boolean(),
                     max_body => non_neg_integer(),
                     max_buffered => pos_integer(),
                     chunk_size => pos_integer(),
                     max_connections => pos_integer(),
                     acceptors => pos_integer(),
                     max_request_line => pos_integer(),
                     max_header_line => pos_integer(),
                     max_headers => pos_integer(),
                     max_head_size => pos_integer(),
                     max_chunk_line => pos_integer(),
                     max_trailers => non_neg_integer(),
                     max_trailer_size => pos_integer(),
                     max_body_readers => pos_integer() | auto,
                     header_timeout => timeout(),
                     body_timeout => timeout(),
                     keepalive_timeout => timeout(),
                     app_timeout => timeout(),
                     send_timeout => timeout(),
                     gate => none | bodypipe_http_gate:gate(),
                     access_log => none | bodypipe_http_access_log:log(),
                     admin => boolean()}.
%% Described with their defaults in erlang/README.md ("Options"). Times are in
%% milliseconds.

-type config() :: #{name := atom(),
                    mounts := [{binary(), app()}],
                    head_limits := map(),
                    chunk_limits := map(),
                    counters := atomics:atomics_ref(),
                    atom() => term()}.
%% What every connection process gets: the options, the loaded mounts (longest
%% prefix first) and the server's shared counters (`bodypipe_http_server').

%% @doc The defaults (see erlang/README.md for what each one bounds).
-spec default_options() -> options().
default_options() ->
    #{name => bodypipe_http,
      ip => {127, 0, 0, 1},
      port => 8080,
      reuseport => false,
      fd => none,
      backlog => 1024,
      apps => [],
      python_path => [],
      validate => false,
      max_body => 4 bsl 30,
      max_buffered => 1 bsl 20,
      chunk_size => 64 * 1024,
      max_connections => 4096,
      acceptors => 32,
      max_request_line => 8192,
      max_header_line => 8192,
      max_headers => 100,
      max_head_size => 64 * 1024,
      max_chunk_line => 4096,
      max_trailers => 100,
      max_trailer_size => 16384,
      max_body_readers => auto,
      header_timeout => 10000,
      body_timeout => 30000,
      keepalive_timeout => 5000,
      app_timeout => infinity,
      send_timeout => 30000,
      gate => none,
      access_log => none,
      admin => false}.

%% @doc Starts a server under the `bodypipe_http' application's supervisor (not
%% linked to the caller); see `options()'.
-spec start(options()) -> {ok, pid()} | {error, term()}.
start(Opts) ->
    case prepare(Opts) of
        {ok, Cfg} ->
            Spec = #{id => {?MODULE, maps:get(name, Cfg)},
                     start => {bodypipe_http_server, start_link, [Cfg]},
                     restart => temporary, shutdown => infinity, type => supervisor,
                     modules => [bodypipe_http_server]},
            Started = case supervisor:start_child(bodypipe_http_sup, Spec) of
                          {ok, Pid} -> {ok, Pid};
                          {error, {already_started, _}} = E -> E;
                          %% The start function's own error, with the child's description.
                          {error, {Reason, Child}} when element(1, Child) =:= child -> {error, Reason};
                          {error, _} = E -> E
                      end,
            not_started(Started, Cfg);
        {error, _} = E ->
            E
    end.

%% @doc Starts a server linked to the caller.
-spec start_link(options()) -> {ok, pid()} | {error, term()}.
start_link(Opts) ->
    case prepare(Opts) of
        {ok, Cfg} -> not_started(bodypipe_http_server:start_link(Cfg), Cfg);
        {error, _} = E -> E
    end.

%% A server that did not start after its ASGI apps' lifespan startup: their
%% shutdown runs now (a running server's runs when it stops).
not_started({ok, _} = Ok, _Cfg) ->
    Ok;
not_started({error, _} = Error, Cfg) ->
    bodypipe_asgi_lifespan:shutdown(maps:get(lifespan, Cfg)),
    Error.

%% @doc Stops the server registered as `Name': closes the listening socket and
%% ends every connection.
-spec stop(atom()) -> ok.
stop(Name) ->
    %% A temporary child: terminating it also forgets its spec.
    case supervisor:terminate_child(bodypipe_http_sup, {?MODULE, Name}) of
        ok ->
            ok;
        {error, not_found} ->
            case whereis(Name) of
                undefined -> ok;
                Pid -> proc_lib:stop(Pid, normal, infinity)
            end
    end.

%% @doc The port the server `Name' listens on (useful with `port => 0').
-spec port(atom()) -> inet:port_number().
port(Name) ->
    bodypipe_http_server:port(Name).

%% @doc The server's counters: open connections, those of them kept alive
%% and waiting for their next request (nothing of it received), acceptors
%% inside an accept, requests holding a body-reader slot, and that slot
%% limit (`max_body_readers').
-spec info(atom()) -> #{connections := non_neg_integer(), body_readers := non_neg_integer(),
                        waiting := non_neg_integer(), accepting := non_neg_integer(),
                        max_body_readers := pos_integer(), port := inet:port_number()}.
info(Name) ->
    bodypipe_http_server:info(Name).

%% @doc Upload progress: the requests the server `Name' is serving, oldest
%% first, with the bytes of each body received so far and expected
%% (`undefined' for a chunked body). The same list is served as JSON at
%% `/_bodypipe/requests', with Prometheus metrics at `/_bodypipe/metrics',
%% when the server's `admin' option is true (see `bodypipe_http_admin').
-spec requests(atom()) -> [bodypipe_http_admin:request()].
requests(Name) ->
    bodypipe_http_server:requests(Name).

%% @doc Runs the `lifespan.shutdown' of the server's ASGI apps now (it runs
%% once: not again when the server stops), leaving the server and its
%% connections as they are: for a caller about to halt the VM once its
%% connections are done (a drained `bodypipe serve' worker), where closing
%% the listening socket first would gain nothing.
-spec lifespan_shutdown(atom()) -> ok.
lifespan_shutdown(Name) ->
    bodypipe_http_server:lifespan_shutdown(Name).

%% ---------------------------------------------------------------------------

-spec prepare(options()) -> {ok, config()} | {error, term()}.
prepare(Opts0) ->
    case check_options(Opts0) of
        ok ->
            Opts = maps:merge(default_options(), Opts0),
            {ok, _} = application:ensure_all_started(bodypipe_http),
            #{name := Name, apps := Apps, python_path := PyPath, validate := Validate} = Opts,
            case bodypipe_wsgi:setup(PyPath) of
                ok -> load_apps(Name, Apps, Validate, Opts);
                {error, _} = E -> E
            end;
        {error, _} = E ->
            E
    end.

load_apps(Name, Apps, Validate, Opts) ->
    %% Python registers each app as "Server Prefix" (several servers may run).
    Loaded = [{P, App, load_app(App, text(Spec), Validate)}
              || Mount <- Apps,
                 {P0, Spec, MountOpts} <- [mount(Mount)],
                 P <- [bodypipe_http_target:normalize_prefix(text(P0))],
                 App <- [app(<<(atom_to_binary(Name))/binary, " ", P/binary>>, MountOpts)]],
    case [{P, E} || {P, _, {error, _} = E} <- Loaded] of
        [] ->
            Mounts = lists:sort(fun({A, _}, {B, _}) -> byte_size(A) >= byte_size(B) end,
                                [{P, App} || {P, App, ok} <- Loaded]),
            %% ASGI lifespan startups, in the order the apps were given.
            Asgi = [{P, N} || {P, #{interface := asgi, name := N}, ok} <- Loaded],
            case bodypipe_asgi_lifespan:startup(Asgi) of
                ok -> {ok, (config(Opts, Mounts))#{lifespan => Asgi}};
                {error, _} = E -> E
            end;
        Errors ->
            {error, {load_failed, Errors}}
    end.

mount({Prefix, Spec}) -> {Prefix, Spec, []};
mount({_, _, _} = Mount) -> Mount.

app(Name, MountOpts) ->
    #{name => Name,
      interface => proplists:get_value(interface, MountOpts, wsgi),
      buffer_chunked => proplists:get_bool(buffer_chunked, MountOpts)}.

load_app(#{interface := asgi, name := Name}, Spec, _Validate) ->
    bodypipe_asgi:load(Name, Spec);
load_app(#{name := Name}, Spec, Validate) ->
    bodypipe_wsgi:load(Name, Spec, Validate).

%% Prefixes and app specs may be given as Erlang strings; Python gets bytes.
text(Bin) when is_binary(Bin) -> Bin;
text(Chars) -> unicode:characters_to_binary(Chars).

config(Opts, Mounts) ->
    #{max_request_line := Line, max_header_line := HeaderLine, max_headers := Headers,
      max_head_size := Head,
      max_chunk_line := ChunkLine, max_trailers := Trailers, max_trailer_size := TrailerSize,
      max_body_readers := Readers} = Opts,
    Opts#{mounts => Mounts,
          head_limits => #{max_request_line => Line, max_header_line => HeaderLine,
                           max_headers => Headers, max_head_size => Head},
          chunk_limits => #{max_chunk_line => ChunkLine, max_trailers => Trailers,
                            max_trailer_size => TrailerSize},
          max_body_readers => body_readers(Readers),
          counters => bodypipe_http_server:new_counters()}.

%% `auto': three quarters of the Python pool, so requests without a body (and
%% apps that answer without reading) always find a free thread however many
%% slow uploads are in progress.
body_readers(auto) ->
    #{max_threads := Max} = py:info(),
    max(1, Max - Max div 4);
body_readers(N) ->
    N.

-spec check_options(term()) -> ok | {error, term()}.
check_options(Opts) when is_map(Opts) ->
    Defaults = default_options(),
    Bad = [{K, V} || {K, V} <- maps:to_list(Opts),
                     not (maps:is_key(K, Defaults) andalso valid(K, V))],
    case Bad of
        [] -> ok;
        _ -> {error, {bad_options, Bad}}
    end;
check_options(Opts) ->
    {error, {bad_options, Opts}}.

valid(name, V) -> is_atom(V);
valid(ip, V) -> is_tuple(V);
valid(port, V) -> is_integer(V) andalso V >= 0 andalso V < 65536;
valid(reuseport, V) -> is_boolean(V);
valid(admin, V) -> is_boolean(V);
valid(validate, V) -> is_boolean(V);
valid(apps, V) -> is_list(V) andalso lists:all(fun valid_mount/1, V);
valid(fd, {Fd, Family}) -> valid(fd, Fd) andalso (Family =:= inet orelse Family =:= inet6);
valid(fd, V) -> V =:= none orelse (is_integer(V) andalso V >= 0);
valid(gate, V) -> V =:= none orelse bodypipe_http_gate:is_gate(V);
valid(access_log, V) -> V =:= none orelse bodypipe_http_access_log:is_log(V);
valid(python_path, V) -> is_list(V);
valid(max_body, V) -> is_integer(V) andalso V >= 0;
valid(max_trailers, V) -> is_integer(V) andalso V >= 0;
valid(max_body_readers, auto) -> true;
valid(K, V) when K =:= header_timeout; K =:= body_timeout; K =:= keepalive_timeout;
                 K =:= app_timeout; K =:= send_timeout ->
    V =:= infinity orelse (is_integer(V) andalso V > 0);
valid(_, V) -> is_integer(V) andalso V > 0.

valid_mount({P, S}) -> is_text(P) andalso is_text(S);
valid_mount({P, S, MountOpts}) ->
    is_text(P) andalso is_text(S) andalso is_list(MountOpts)
        andalso lists:all(fun({interface, I}) -> I =:= wsgi orelse I =:= asgi;
                             (buffer_chunked) -> true;
                             ({buffer_chunked, B}) -> is_boolean(B);
                             (_) -> false
                          end, MountOpts);
valid_mount(_) -> false.

is_text(T) ->
    try is_binary(unicode:characters_to_binary(T)) catch error:_ -> false end.
