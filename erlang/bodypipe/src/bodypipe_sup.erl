%% @doc Top supervisor of the bodypipe application.
-module(bodypipe_sup).
-behaviour(supervisor).

-export([start_link/0, init/1]).

-spec start_link() -> {ok, pid()} | ignore | {error, term()}.
start_link() ->
    supervisor:start_link({local, ?MODULE}, ?MODULE, []).

-spec init([]) -> {ok, {supervisor:sup_flags(), [supervisor:child_spec()]}}.
init([]) ->
    Watch = #{id => bodypipe_owner_watch,
              start => {bodypipe_owner_watch, start_link, []},
              restart => permanent,
              shutdown => 5000,
              type => worker,
              modules => [bodypipe_owner_watch]},
    {ok, {#{strategy => one_for_one, intensity => 10, period => 10}, [Watch]}}.
