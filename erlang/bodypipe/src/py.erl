%% @doc Run Python in the embedded interpreter.
%%
%% Calls run on threads of the NIF's own pool, never on a scheduler: the caller
%% waits in `receive', so any number of Python calls may block (for instance
%% on a `py_buffer' that is still being written) without starving the VM.
%%
%% Conversion, Erlang to Python: binary to bytes (binary map keys to str),
%% integer to int, float to float, `true'/`false' to bool, `none'/`undefined'
%% to None, other atoms to str, list, tuple, map to list, tuple, dict, a
%% `py_buffer' to a `PyBuffer' reading it, an opaque Python reference to its
%% object. Python to Erlang: None to `none', bool, int, float, str to a UTF-8
%% binary, bytes, list, tuple, dict to map; other objects to opaque references
%% that can be passed back into later calls. Python exceptions come back as
%% `{error, {ExceptionName, Message}}' with binaries; a block too large for the
%% VM to allocate as a binary is a `MemoryError', never a VM abort.
%%
%% A call handed `py_buffer's (in its arguments or `eval' locals, however
%% nested) monitors its caller: if the caller dies before the call ends, those
%% buffers are aborted with `caller_down', so a Python read blocked on them
%% raises `BodyAborted' and the call's thread is freed.
-module(py).

-export([context/1, exec/2, eval/2, eval/3, call/3, call/4, call_async/4, info/0]).

-export_type([context/0, pyobj/0, py_error/0, code/0]).

-opaque context() :: {py_context, term()}.
%% A named Python namespace (a globals dict), created on first use.

-type pyobj() :: reference().
%% An opaque reference to a Python object.

-type py_error() :: {ExceptionName :: binary(), Message :: binary()}.

-type code() :: unicode:chardata().

-type name() :: atom() | binary().

%% @doc The namespace called `Name' (any term); the same name gives the same
%% namespace. The namespace itself is created on first use.
-spec context(term()) -> context().
context(Name) ->
    {py_context, Name}.

%% @doc Executes statements in `Ctx'.
-spec exec(context(), code()) -> ok | {error, py_error()}.
exec(Ctx, Code) ->
    run(fun(Ref) -> bodypipe_nif:py_exec(Ref, Ctx, to_code(Code)) end).

%% @doc Evaluates an expression in `Ctx'.
-spec eval(context(), code()) -> {ok, term()} | {error, py_error()}.
eval(Ctx, Code) ->
    run(fun(Ref) -> bodypipe_nif:py_eval(Ref, Ctx, to_code(Code), undefined) end).

%% @doc Evaluates an expression in `Ctx' with extra names bound from `Locals'
%% (`#{Name :: binary() => Value}'); the bindings do not persist in `Ctx'.
-spec eval(context(), code(), #{binary() => term()}) -> {ok, term()} | {error, py_error()}.
eval(Ctx, Code, Locals) when is_map(Locals) ->
    maps:foreach(fun(K, _) when is_binary(K) -> ok;
                    (K, V) -> erlang:error(badarg, [#{K => V}])
                 end, Locals),
    run(fun(Ref) -> bodypipe_nif:py_eval(Ref, Ctx, to_code(Code), Locals) end);
eval(_Ctx, _Code, Locals) ->
    erlang:error(badarg, [Locals]).

%% @doc `Module.Function(*Args)' in the default context.
-spec call(name() | pyobj(), name(), [term()]) -> {ok, term()} | {error, py_error()}.
call(Module, Function, Args) ->
    call(context(default), Module, Function, Args).

%% @doc `Module.Function(*Args)': `Module' is imported (dotted names work), or is
%% an opaque Python object whose attribute `Function' is called; `Function' may
%% be dotted (`<<"Class.method">>').
-spec call(context(), name() | pyobj(), name(), [term()]) -> {ok, term()} | {error, py_error()}.
call(Ctx, Module, Function, Args) when is_list(Args) ->
    run(fun(Ref) -> bodypipe_nif:py_call(Ref, Ctx, Module, Function, Args) end);
call(_Ctx, _Module, _Function, Args) ->
    erlang:error(badarg, [Args]).

%% @doc `call/4' without waiting: returns `{ok, Ref}' at once, and the result
%% (what `call/4' would return) arrives later as the message `{Ref, Result}'.
%% A process can so wait for a Python call and for other messages (a socket,
%% timers) in one `receive'; the message comes exactly once, also when the
%% caller no longer wants it.
%%
%% ```
%% {ok, Ref} = py:call_async(py:context(default), operator, add, [1, 2]),
%% receive {Ref, {ok, 3}} -> ok end.
%% '''
-spec call_async(context(), name() | pyobj(), name(), [term()]) ->
          {ok, reference()} | {error, py_error()}.
call_async(Ctx, Module, Function, Args) when is_list(Args) ->
    Ref = make_ref(),
    case bodypipe_nif:py_call(Ref, Ctx, Module, Function, Args) of
        ok -> {ok, Ref};
        {error, _} = Error -> Error
    end;
call_async(_Ctx, _Module, _Function, Args) ->
    erlang:error(badarg, [Args]).

%% @doc State of the embedded interpreter and of the call threads.
-spec info() -> #{initialized := boolean(), threads := non_neg_integer(),
                  idle := non_neg_integer(), queued := non_neg_integer(),
                  max_threads := pos_integer(), libpython := binary() | undefined}.
info() ->
    bodypipe_nif:py_info().

to_code(Code) when is_binary(Code) ->
    Code;
to_code(Code) ->
    case unicode:characters_to_binary(Code) of
        Bin when is_binary(Bin) -> Bin;
        _ -> erlang:error(badarg, [Code])
    end.

run(Submit) ->
    Ref = make_ref(),
    case Submit(Ref) of
        ok ->
            receive {Ref, Result} -> Result end;
        {error, _} = Error ->
            Error
    end.
