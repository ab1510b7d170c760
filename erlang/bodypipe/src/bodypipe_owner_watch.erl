%% @doc Monitors the processes that own `py_buffer's.
%%
%% A NIF resource monitor learns that a process died but not why; this process
%% monitors each owner once (the NIF tells `py_buffer:new/1' when a process
%% creates its first buffer) and, on `DOWN', aborts every buffer the owner
%% created with `{owner_down, Reason}' formatted as Erlang prints it, so a
%% Python reader blocked on such a buffer gets `BodyAborted' instead of hanging.
%% When this process is not running, a per-buffer NIF monitor aborts with
%% `{owner_down,unknown}' instead.
-module(bodypipe_owner_watch).
-behaviour(gen_server).

-export([start_link/0, watch/1]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2]).

-spec start_link() -> {ok, pid()} | ignore | {error, term()}.
start_link() ->
    gen_server:start_link({local, ?MODULE}, ?MODULE, [], []).

%% @doc Has the watcher monitor `Pid', and returns once it does.
%%
%% Synchronous because `py_buffer:new/1' calls it from the owner itself: a cast
%% could reach the watcher after an owner that exits at once is gone, and a
%% monitor set then reports `noproc' instead of the owner's real exit reason.
%% While the owner waits here it is alive, so the monitor sees its real exit.
%% Only a process's first buffer pays for the round trip. A no-op when the
%% watcher is not running (the NIF's own monitor covers for it); if the watcher
%% dies during the call, its restart monitors every owner the NIF knows,
%% `Pid' included, so that is not an error for the caller either.
-spec watch(pid()) -> ok.
watch(Pid) ->
    try gen_server:call(?MODULE, {watch, Pid}, infinity)
    catch
        exit:{_Reason, {gen_server, call, _}} -> ok
    end.

%% State: #{pid() => reference()}
-spec init([]) -> {ok, #{pid() => reference()}}.
init([]) ->
    %% After a restart, monitor again every owner the NIF still knows about.
    {ok, lists:foldl(fun add/2, #{}, bodypipe_nif:owners())}.

-spec handle_call(term(), gen_server:from(), map()) ->
          {reply, ok | {error, unknown_call}, map()}.
handle_call({watch, Pid}, _From, State) when is_pid(Pid) ->
    {reply, ok, add(Pid, State)};
handle_call(_Req, _From, State) ->
    {reply, {error, unknown_call}, State}.

-spec handle_cast(term(), map()) -> {noreply, map()}.
handle_cast(_Msg, State) ->
    {noreply, State}.

-spec handle_info(term(), map()) -> {noreply, map()}.
handle_info({'DOWN', Ref, process, Pid, Reason}, State) ->
    case State of
        #{Pid := Ref} ->
            ok = bodypipe_nif:owner_down(Pid, py_buffer:format_reason({owner_down, Reason})),
            {noreply, maps:remove(Pid, State)};
        _ ->
            {noreply, State}
    end;
handle_info(_Msg, State) ->
    {noreply, State}.

add(Pid, State) ->
    case State of
        #{Pid := _} -> State;
        _ -> State#{Pid => erlang:monitor(process, Pid)}
    end.
