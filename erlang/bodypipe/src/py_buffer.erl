%% @doc A streaming request body that embedded Python reads as `erlang.PyBuffer'.
%%
%% Erlang writes, Python reads (file-like: `read', `readline', iteration,
%% `read_nonblock', `memoryview'). Conventions: wrong types or impossible values
%% raise `error:badarg'; conditions of the stream return `{error, Atom}'.
%%
%% The process that calls `new/0,1' owns the buffer: if it exits before
%% `close/1', the buffer is aborted with `{owner_down, Reason}'. Python holds only
%% the reader side, so when the last Erlang reference is garbage-collected
%% without `close/1' the stream is aborted as well (readers never hang).
-module(py_buffer).

-export([new/0, new/1, write/2, close/1, abort/2, notify_writable/1, info/1]).
-export([format_reason/1]).

-export_type([buffer/0, options/0, write_error/0, info/0]).

-type buffer() :: reference().
%% A NIF resource; pass it to `py' calls and it arrives in Python as a `PyBuffer'.

-type options() :: #{content_length => non_neg_integer() | undefined,
                     max_buffered => pos_integer(),
                     max_size => non_neg_integer()}.
%% `content_length': the body ends (EOF) once that many bytes are written;
%% `max_buffered': ring mode, writes fail with `full' while that many bytes are
%% unread (see `notify_writable/1'); `max_size': largest body, default 1 GiB.

-type write_error() :: closed | exceeds_content_length | too_large | full | enomem.

-type info() :: #{written := non_neg_integer(),
                  read := non_neg_integer(),
                  buffered := non_neg_integer(),
                  eof := boolean(),
                  aborted := boolean(),
                  reader_closed := boolean(),
                  writer_closed := boolean(),
                  content_length := non_neg_integer() | undefined,
                  max_buffered := non_neg_integer() | undefined,
                  abort_reason := binary() | undefined,
                  %% Wake syscalls made so far to wake a parked reader (Python read calls that
                  %% had to wait): with threshold wake-ups, about one per such call at most.
                  reader_wakes := non_neg_integer(),
                  %% Wake syscalls made so far to wake a writer parked for room (ring mode).
                  writer_wakes := non_neg_integer(),
                  %% A blocking read is parked (or about to park) waiting for bytes; a wait that
                  %% ended without a wake (a timeout) may leave this true until the next write.
                  reader_waiting := boolean(),
                  %% The writer is parked (or about to park) waiting for room; as reader_waiting.
                  writer_waiting := boolean()}.

%% @doc A buffer for a body of unknown length (chunked), unbounded.
-spec new() -> {ok, buffer()}.
new() ->
    {ok, _} = do_new(undefined, undefined, undefined).

%% @doc A buffer for a body of `ContentLength' bytes (or unknown: `undefined'),
%% or configured by an options map. Memory is reserved lazily, as data arrives.
-spec new(non_neg_integer() | undefined | options()) -> {ok, buffer()} | {error, too_large}.
new(undefined) ->
    do_new(undefined, undefined, undefined);
new(N) when is_integer(N), N >= 0 ->
    do_new(N, undefined, undefined);
new(Opts) when is_map(Opts) ->
    maps:foreach(fun check_option/2, Opts),
    do_new(maps:get(content_length, Opts, undefined),
           maps:get(max_buffered, Opts, undefined),
           maps:get(max_size, Opts, undefined));
new(Other) ->
    erlang:error(badarg, [Other]).

check_option(content_length, undefined) -> ok;
check_option(content_length, N) when is_integer(N), N >= 0 -> ok;
check_option(max_buffered, N) when is_integer(N), N > 0 -> ok;
check_option(max_size, N) when is_integer(N), N >= 0 -> ok;
check_option(K, V) -> erlang:error(badarg, [#{K => V}]).

do_new(ContentLength, MaxBuffered, MaxSize) ->
    case bodypipe_nif:buffer_new(ContentLength, MaxBuffered, MaxSize) of
        {ok, Buf, true} ->
            %% First buffer of this process: have the watcher monitor it.
            ok = bodypipe_owner_watch:watch(self()),
            {ok, Buf};
        {ok, Buf, false} ->
            {ok, Buf};
        {error, too_large} = Error ->
            Error
    end.

%% @doc Appends `Data' as one atomic write: all of it or nothing (on `full' the
%% caller still holds the data and can retry after `notify_writable/1').
%% Large writes (over 256 KiB or 20,000 iolist elements) run on a dirty
%% scheduler, as one call; so does a write that finds another process's large
%% write in progress (writes from several processes are serialized).
-spec write(buffer(), iodata()) -> ok | {error, write_error()}.
write(Buf, Data) ->
    bodypipe_nif:or_dirty(bodypipe_nif:buffer_write(Buf, Data),
                          fun() -> bodypipe_nif:buffer_write_dirty(Buf, Data) end).

%% @doc Ends the body: Python reads the remaining data, then EOF. Idempotent
%% (`ok' once closed or aborted).
%%
%% A declared content length is a promise: closing before it is reached returns
%% `{error, incomplete}' and ends the body as an abort, so Python readers get the
%% bytes written, then `BodyAborted("incomplete body")', never a clean EOF.
-spec close(buffer()) -> ok | {error, incomplete}.
close(Buf) ->
    bodypipe_nif:or_dirty(bodypipe_nif:buffer_close(Buf),
                          fun() -> bodypipe_nif:buffer_close_dirty(Buf) end).

%% @doc Ends the body with an error: Python readers get the data written so far,
%% then `BodyAborted' whose message is `Reason' formatted as Erlang prints it.
%% A no-op after `close/1'.
-spec abort(buffer(), term()) -> ok.
abort(Buf, Reason) ->
    Text = format_reason(Reason),
    bodypipe_nif:or_dirty(bodypipe_nif:buffer_abort(Buf, Text),
                          fun() -> bodypipe_nif:buffer_abort_dirty(Buf, Text) end).

%% @doc Asks for `{py_buffer, Buf, writable}' once unread bytes fall below half
%% of `max_buffered' (at once if they already are, and always for an unbounded
%% buffer), or `{py_buffer, Buf, closed}' if the buffer can take no more writes
%% first (the reader closed, or the buffer was closed or aborted). One message
%% per call.
-spec notify_writable(buffer()) -> ok.
notify_writable(Buf) ->
    bodypipe_nif:or_dirty(bodypipe_nif:buffer_notify_writable(Buf),
                          fun() -> bodypipe_nif:buffer_notify_writable_dirty(Buf) end).

%% @doc Counters of the buffer.
-spec info(buffer()) -> info().
info(Buf) ->
    bodypipe_nif:buffer_info(Buf).

%% @doc `Reason' as Erlang prints it (`~0tp'), as a UTF-8 binary.
-spec format_reason(term()) -> binary().
format_reason(Reason) ->
    unicode:characters_to_binary(io_lib:format("~0tp", [Reason])).
