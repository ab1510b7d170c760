%% @doc Raw NIF functions of bodypipe (the rustler crate in native/bodypipe_nif).
%%
%% Use the typed facades `py_buffer', `py' and `bodypipe_http_parser' instead;
%% these functions are replaced when priv/bodypipe_nif.so loads, and raise
%% `nif_not_loaded' until then (all but `or_dirty/2', plain Erlang).
-module(bodypipe_nif).

-export([buffer_new/3, buffer_write/2, buffer_write_dirty/2,
         buffer_close/1, buffer_close_dirty/1, buffer_abort/2, buffer_abort_dirty/2,
         buffer_notify_writable/1, buffer_notify_writable_dirty/1, buffer_info/1,
         owner_down/2, owners/0,
         py_exec/3, py_eval/4, py_call/5, py_info/0, build_info/0,
         http_parse_head/5, http_parse_head_dirty/5,
         http_chunked_new/3, http_chunked_feed/3, http_chunked_feed_dirty/3]).
-export([or_dirty/2]).

-on_load(init/0).

-define(not_loaded, erlang:nif_error(nif_not_loaded, [{module, ?MODULE}, {line, ?LINE}])).

-spec init() -> ok | {error, term()}.
init() ->
    Dir = case code:priv_dir(bodypipe) of
              {error, bad_name} ->
                  filename:join(filename:dirname(filename:dirname(code:which(?MODULE))), "priv");
              D -> D
          end,
    erlang:load_nif(filename:join(Dir, "bodypipe_nif"), 0).

-spec buffer_new(non_neg_integer() | undefined, pos_integer() | undefined,
                 non_neg_integer() | undefined) ->
          {ok, reference(), boolean()} | {error, too_large}.
buffer_new(_ContentLength, _MaxBuffered, _MaxSize) -> ?not_loaded.

-spec buffer_write(reference(), iodata()) -> ok | dirty | {error, atom()}.
buffer_write(_Buf, _Data) -> ?not_loaded.

-spec buffer_write_dirty(reference(), iodata()) -> ok | {error, atom()}.
buffer_write_dirty(_Buf, _Data) -> ?not_loaded.

%% Functions that touch the writer return `dirty' (instead of waiting on a
%% normal scheduler) when a large write on a dirty scheduler holds it, and
%% those that take data return it for inputs too large for ~1 ms of work; the
%% facade then calls the `_dirty' variant, which waits, through `or_dirty/2'.

%% @doc `Result' of a NIF call, or, when the NIF answered `dirty', the result of
%% `Dirty()', which redoes the call with its variant on a dirty scheduler.
-spec or_dirty(dirty | Result, fun(() -> Result)) -> Result.
or_dirty(dirty, Dirty) -> Dirty();
or_dirty(Result, _Dirty) -> Result.

-spec buffer_close(reference()) -> ok | {error, incomplete} | dirty.
buffer_close(_Buf) -> ?not_loaded.

-spec buffer_close_dirty(reference()) -> ok | {error, incomplete}.
buffer_close_dirty(_Buf) -> ?not_loaded.

-spec buffer_abort(reference(), binary()) -> ok | dirty.
buffer_abort(_Buf, _Reason) -> ?not_loaded.

-spec buffer_abort_dirty(reference(), binary()) -> ok.
buffer_abort_dirty(_Buf, _Reason) -> ?not_loaded.

-spec buffer_notify_writable(reference()) -> ok | dirty.
buffer_notify_writable(_Buf) -> ?not_loaded.

-spec buffer_notify_writable_dirty(reference()) -> ok.
buffer_notify_writable_dirty(_Buf) -> ?not_loaded.

-spec buffer_info(reference()) -> map().
buffer_info(_Buf) -> ?not_loaded.

-spec owner_down(pid(), binary()) -> ok.
owner_down(_Pid, _Reason) -> ?not_loaded.

-spec owners() -> [pid()].
owners() -> ?not_loaded.

-spec py_exec(reference(), tuple(), binary()) -> ok | {error, {binary(), binary()}}.
py_exec(_Ref, _Ctx, _Code) -> ?not_loaded.

-spec py_eval(reference(), tuple(), binary(), map() | undefined) -> ok | {error, {binary(), binary()}}.
py_eval(_Ref, _Ctx, _Code, _Locals) -> ?not_loaded.

-spec py_call(reference(), tuple(), atom() | binary() | reference(), atom() | binary(), list()) ->
          ok | {error, {binary(), binary()}}.
py_call(_Ref, _Ctx, _Module, _Function, _Args) -> ?not_loaded.

-spec py_info() -> map().
py_info() -> ?not_loaded.

-spec build_info() -> map().
build_info() -> ?not_loaded.

-spec http_parse_head(binary(), non_neg_integer(), non_neg_integer(), non_neg_integer(),
                      non_neg_integer()) -> tuple() | more | dirty.
http_parse_head(_Bin, _MaxRequestLine, _MaxHeaderLine, _MaxHeaders, _MaxHeadSize) -> ?not_loaded.

-spec http_parse_head_dirty(binary(), non_neg_integer(), non_neg_integer(), non_neg_integer(),
                            non_neg_integer()) -> tuple() | more.
http_parse_head_dirty(_Bin, _MaxRequestLine, _MaxHeaderLine, _MaxHeaders, _MaxHeadSize) -> ?not_loaded.

-spec http_chunked_new(non_neg_integer(), non_neg_integer(), non_neg_integer()) -> reference().
http_chunked_new(_MaxChunkLine, _MaxTrailers, _MaxTrailerSize) -> ?not_loaded.

-spec http_chunked_feed(reference(), reference(), binary()) -> more | dirty | tuple().
http_chunked_feed(_Decoder, _Buf, _Data) -> ?not_loaded.

-spec http_chunked_feed_dirty(reference(), reference(), binary()) -> more | tuple().
http_chunked_feed_dirty(_Decoder, _Buf, _Data) -> ?not_loaded.
