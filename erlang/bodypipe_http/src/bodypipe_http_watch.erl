%% @doc The socket watch of a connection whose request body is complete while
%% its application still runs: without it a client that goes away then is
%% noticed only when the response is written, and an ASGI app waiting in
%% `receive()' never hears of it.
%%
%% One read at a time (`{active, once}'), and what arrives is not consumed:
%% the bytes are kept for the next request (pipelining), up to
%% `max_head_size', and the watch stops reading beyond that (TCP flow control
%% holds the rest). The end of the client's stream is a half-close unless the
%% connection was reset: a client may shut down its sending side after its
%% request (`shutdown(SHUT_WR)') and still read the answer, so only a reset
%% (or a failed send) means the client is gone. (A client that closes its
%% socket without a reset looks like a half-close until the response is sent.)
-module(bodypipe_http_watch).

-export([arm/3, data/3, closed/1, stop/2]).

-export_type([state/0]).

-type state() :: off | armed | full | eof.
%% off: not watching; armed: one read asked for; full: `max_head_size' bytes
%% kept, no more read; eof: the client shut down its sending side.

%% @doc Starts (or goes on) watching `Sock' unless `Rest' (the bytes kept so
%% far) already holds `MaxHead' bytes.
-spec arm(gen_tcp:socket(), binary(), pos_integer()) -> state().
arm(_Sock, Rest, MaxHead) when byte_size(Rest) >= MaxHead ->
    full;
arm(Sock, _Rest, _MaxHead) ->
    case inet:setopts(Sock, [{active, once}]) of
        ok -> armed;
        {error, _} -> off   % the socket is going: the next send says so
    end.

%% @doc Bytes that arrived while watching: kept after `Rest', and whether to
%% read on.
-spec data(gen_tcp:socket(), binary(), {binary(), pos_integer()}) -> {state(), binary()}.
data(Sock, Data, {Rest, MaxHead}) ->
    Rest1 = <<Rest/binary, Data/binary>>,
    {arm(Sock, Rest1, MaxHead), Rest1}.

%% @doc The client's stream ended (`tcp_closed'): `eof' for a half-close (the
%% connection is still there, the response can go out), `gone' after a reset
%% (the socket is no longer connected).
-spec closed(gen_tcp:socket()) -> eof | gone.
closed(Sock) ->
    case inet:peername(Sock) of
        {ok, _} ->
            %% Nothing more will come; the driver would otherwise keep the
            %% socket marked `{active, once}'.
            _ = inet:setopts(Sock, [{active, false}]),
            eof;
        {error, _} ->
            gone
    end.

%% @doc Ends the watch before the socket is read passively again: what the last
%% armed read delivered is added to `Rest'. An end of the client's stream is
%% taken out of the mailbox too; the next passive read reports it again.
-spec stop(gen_tcp:socket(), binary()) -> binary().
stop(Sock, Rest) ->
    _ = inet:setopts(Sock, [{active, false}]),
    receive
        {tcp, Sock, Data} -> <<Rest/binary, Data/binary>>;
        {tcp_closed, Sock} -> Rest;
        {tcp_error, Sock, _} -> Rest
    after 0 ->
        Rest
    end.
