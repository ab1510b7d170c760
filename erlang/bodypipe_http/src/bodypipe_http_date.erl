%% @doc The `Date' header value (RFC 9110 §5.6.7 IMF-fixdate), formatted once
%% per second per process.
-module(bodypipe_http_date).

-export([now/0, format/1]).

-define(KEY, bodypipe_http_date).

%% @doc The current time, e.g. `<<"Sun, 06 Nov 1994 08:49:37 GMT">>'.
-spec now() -> binary().
now() ->
    Sec = erlang:system_time(second),
    case get(?KEY) of
        {Sec, Bin} ->
            Bin;
        _ ->
            Bin = format(Sec),
            put(?KEY, {Sec, Bin}),
            Bin
    end.

%% @doc `Sec' (seconds since 1970, UTC) as an IMF-fixdate.
%%
%% ```
%% <<"Sun, 06 Nov 1994 08:49:37 GMT">> = bodypipe_http_date:format(784111777).
%% '''
-spec format(integer()) -> binary().
format(Sec) ->
    {{Y, Mo, D} = Date, {H, Mi, S}} =
        calendar:gregorian_seconds_to_datetime(Sec + 62167219200),
    Day = element(calendar:day_of_the_week(Date),
                  {<<"Mon">>, <<"Tue">>, <<"Wed">>, <<"Thu">>, <<"Fri">>, <<"Sat">>, <<"Sun">>}),
    Month = element(Mo, {<<"Jan">>, <<"Feb">>, <<"Mar">>, <<"Apr">>, <<"May">>, <<"Jun">>,
                         <<"Jul">>, <<"Aug">>, <<"Sep">>, <<"Oct">>, <<"Nov">>, <<"Dec">>}),
    iolist_to_binary(io_lib:format("~s, ~2..0b ~s ~4..0b ~2..0b:~2..0b:~2..0b GMT",
                                   [Day, D, Month, Y, H, Mi, S])).
