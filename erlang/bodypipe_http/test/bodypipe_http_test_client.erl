%% A raw HTTP/1.1 client for the bodypipe_http suites: sends exactly the bytes
%% a test gives it and reads responses with OTP's own parser
%% (`erlang:decode_packet/3', `http_bin' and `httph_bin'), so the server's
%% framing (Content-Length, chunked, close-delimited) is checked by a parser
%% that is not ours. 127.0.0.1 only; every wait is bounded.
-module(bodypipe_http_test_client).

-export([wait_until/2, connect/1, connect/2, connect/3, send/2, response/2, response/3, responses/3, closed/2,
         exchange/2, exchange/3, header/2, recv_all/2, wait_data/2]).

-define(BUF(S), {?MODULE, buf, S}).

connect(Port) ->
    connect(Port, []).

connect(Port, Opts) ->
    connect({127, 0, 0, 1}, Port, Opts).

connect(Address, Port, Opts) ->
    {ok, S} = gen_tcp:connect(Address, Port,
                              [binary, {active, false}, {packet, raw}, {nodelay, true} | Opts],
                              5000),
    put(?BUF(S), <<>>),
    S.

send(S, Data) ->
    gen_tcp:send(S, Data).

%% One response: {ok, #{status, reason, version, headers, body}} (headers: lowercase names, in
%% order; a 1xx response is returned as it is, the final one needs another call) or
%% {error, closed | timeout | {bad_response, Bin}}. Opts: #{head => true} for a HEAD request.
response(S, Timeout) ->
    response(S, Timeout, #{}).

response(S, Timeout, Opts) ->
    Deadline = erlang:monotonic_time(millisecond) + Timeout,
    case status_line(S, Deadline) of
        {ok, {http_response, Version, Status, Reason}} ->
            case headers(S, Deadline, []) of
                {ok, Headers} ->
                    Resp = #{status => Status, reason => Reason, version => Version,
                             headers => Headers},
                    case body(S, Deadline, Status, Headers, Opts) of
                        {ok, Body} -> {ok, Resp#{body => Body}};
                        {error, _} = E -> E
                    end;
                {error, _} = E ->
                    E
            end;
        {error, _} = E ->
            E
    end.

%% Up to N responses (fewer if the connection closes or nothing comes within Timeout).
responses(S, N, Timeout) ->
    responses(S, N, Timeout, []).

responses(_S, 0, _Timeout, Acc) ->
    lists:reverse(Acc);
responses(S, N, Timeout, Acc) ->
    case response(S, Timeout) of
        {ok, R} -> responses(S, N - 1, Timeout, [R | Acc]);
        {error, _} -> lists:reverse(Acc)
    end.

%% true if the server closes the connection within Timeout without sending anything more;
%% {data, Bin} if it sends bytes; timeout if it keeps the connection open.
closed(S, Timeout) ->
    case take_buf(S) of
        <<>> ->
            case gen_tcp:recv(S, 0, Timeout) of
                {error, closed} -> true;
                {error, econnreset} -> true;
                {error, enotconn} -> true;   % the close was already seen by an earlier read
                {error, timeout} -> timeout;
                {ok, Data} -> {data, Data}
            end;
        Data ->
            {data, Data}
    end.

%% Sends Bytes on a new connection, reads every response until the server closes or goes
%% quiet for Quiet ms: {Responses, closed | open}.
exchange(Port, Bytes) ->
    exchange(Port, Bytes, 1000).

exchange(Port, Bytes, Quiet) ->
    S = connect(Port),
    ok = send(S, Bytes),
    Resps = responses(S, 1000, Quiet),
    End = case closed(S, Quiet) of
              true -> closed;
              _ -> open
          end,
    gen_tcp:close(S),
    {Resps, End}.

%% Waits up to Timeout for bytes from the server (kept for the next response/2):
%% data | timeout | closed.
wait_data(S, Timeout) ->
    case fill(S, erlang:monotonic_time(millisecond) + Timeout) of
        ok -> data;
        {error, timeout} -> timeout;
        {error, _} -> closed
    end.

header(Name, #{headers := Headers}) ->
    proplists:get_value(Name, Headers).

%% Everything until the server closes (bounded by Timeout).
recv_all(S, Timeout) ->
    Deadline = erlang:monotonic_time(millisecond) + Timeout,
    recv_all(S, Deadline, [take_buf(S)]).

recv_all(S, Deadline, Acc) ->
    case gen_tcp:recv(S, 0, left(Deadline)) of
        {ok, Data} -> recv_all(S, Deadline, [Data | Acc]);
        {error, _} -> iolist_to_binary(lists:reverse(Acc))
    end.

%% ---------------------------------------------------------------------------

status_line(S, Deadline) ->
    packet(S, Deadline, http_bin).

headers(S, Deadline, Acc) ->
    case packet(S, Deadline, httph_bin) of
        {ok, {http_header, _, Name, _, Value}} ->
            headers(S, Deadline, [{lower(Name), Value} | Acc]);
        {ok, http_eoh} ->
            {ok, lists:reverse(Acc)};
        {ok, Other} ->
            {error, {bad_response, Other}};
        {error, _} = E ->
            E
    end.

packet(S, Deadline, Type) ->
    Buf = get(?BUF(S)),
    case erlang:decode_packet(Type, Buf, []) of
        {ok, {http_error, _} = E, _} ->
            {error, {bad_response, E}};
        {ok, Packet, Rest} ->
            put(?BUF(S), Rest),
            {ok, Packet};
        {more, _} ->
            case fill(S, Deadline) of
                ok -> packet(S, Deadline, Type);
                {error, _} = E -> E
            end;
        {error, R} ->
            {error, {bad_response, R}}
    end.

body(_S, _Deadline, Status, _Headers, Opts) when Status < 200; Status =:= 204; Status =:= 304 ->
    _ = Opts,
    {ok, <<>>};
body(_S, _Deadline, _Status, _Headers, #{head := true}) ->
    {ok, <<>>};
body(S, Deadline, _Status, Headers, _Opts) ->
    case {proplists:get_value(<<"transfer-encoding">>, Headers),
          proplists:get_value(<<"content-length">>, Headers)} of
        {<<"chunked">>, _} -> chunked(S, Deadline, []);
        {undefined, undefined} -> {ok, until_close(S, Deadline)};
        {undefined, N} -> exactly(S, Deadline, binary_to_integer(N))
    end.

exactly(S, Deadline, N) ->
    case get(?BUF(S)) of
        <<Body:N/binary, Rest/binary>> ->
            put(?BUF(S), Rest),
            {ok, Body};
        _ ->
            case fill(S, Deadline) of
                ok -> exactly(S, Deadline, N);
                {error, _} = E -> E
            end
    end.

until_close(S, Deadline) ->
    case fill(S, Deadline) of
        ok -> until_close(S, Deadline);
        {error, _} -> take_buf(S)
    end.

chunked(S, Deadline, Acc) ->
    case line(S, Deadline) of
        {ok, Line} ->
            [Hex | _] = binary:split(Line, <<";">>),
            case binary_to_integer(string:trim(Hex), 16) of
                0 ->
                    case trailers(S, Deadline) of
                        ok -> {ok, iolist_to_binary(lists:reverse(Acc))};
                        E -> E
                    end;
                N ->
                    case exactly(S, Deadline, N + 2) of
                        {ok, <<Data:N/binary, "\r\n">>} -> chunked(S, Deadline, [Data | Acc]);
                        {ok, Other} -> {error, {bad_chunk, Other}};
                        E -> E
                    end
            end;
        E ->
            E
    end.

trailers(S, Deadline) ->
    case line(S, Deadline) of
        {ok, <<>>} -> ok;
        {ok, _} -> trailers(S, Deadline);
        E -> E
    end.

line(S, Deadline) ->
    Buf = get(?BUF(S)),
    case binary:split(Buf, <<"\r\n">>) of
        [Line, Rest] ->
            put(?BUF(S), Rest),
            {ok, Line};
        [_] ->
            case fill(S, Deadline) of
                ok -> line(S, Deadline);
                E -> E
            end
    end.

fill(S, Deadline) ->
    case gen_tcp:recv(S, 0, left(Deadline)) of
        {ok, Data} ->
            put(?BUF(S), <<(get(?BUF(S)))/binary, Data/binary>>),
            ok;
        {error, E} when E =:= econnreset; E =:= enotconn ->
            {error, closed};
        {error, _} = E ->
            E
    end.

take_buf(S) ->
    case put(?BUF(S), <<>>) of
        undefined -> <<>>;
        B -> B
    end.

left(Deadline) ->
    max(0, Deadline - erlang:monotonic_time(millisecond)).

lower(A) when is_atom(A) -> lower(atom_to_binary(A));
lower(B) -> string:lowercase(B).

%% @doc Polls `Fun' every 25 ms until it returns true, at most `Tries' times
%% (then fails the test with `wait_until_timeout'): a bound against hanging, not
%% a timing assertion.
-spec wait_until(fun(() -> boolean()), non_neg_integer()) -> ok.
wait_until(_Fun, 0) ->
    error(wait_until_timeout);
wait_until(Fun, N) ->
    case Fun() of
        true -> ok;
        false -> timer:sleep(25), wait_until(Fun, N - 1)
    end.
