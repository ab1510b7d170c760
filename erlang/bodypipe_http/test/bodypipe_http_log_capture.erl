%% A logger handler for the suites: sends every log event's formatted text to
%% the process given as `pid' in the handler's config, as `{log, Level, Text}'.
-module(bodypipe_http_log_capture).

-export([start/1, stop/1, log/2]).

start(Id) ->
    ok = logger:add_handler(Id, ?MODULE, #{level => all, config => #{pid => self()}}).

stop(Id) ->
    _ = logger:remove_handler(Id),
    ok.

log(#{level := Level, msg := Msg, meta := Meta}, #{config := #{pid := Pid}}) ->
    Text = case Msg of
               {string, S} -> S;
               {report, R} -> io_lib:format("~tp", [R]);
               {Format, Args} -> io_lib:format(Format, Args)
           end,
    _ = Meta,
    Pid ! {log, Level, unicode:characters_to_binary(Text)},
    ok.
