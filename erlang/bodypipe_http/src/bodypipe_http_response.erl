%% @doc Response bytes: the status line and headers, the body framing and the
%% server's own error responses.
%%
%% The application's status and headers arrive validated by the WSGI host
%% (RFC 9110 tokens for names, no control characters in values or the status)
%% and encoded as latin-1; hop-by-hop headers are already dropped. The server
%% adds `Server: bodypipe' and `Date' unless the application set them, the
%% framing header (`Transfer-Encoding: chunked' when the application gave no
%% `Content-Length'), and `Connection'.
-module(bodypipe_http_response).

-export([framing/4, head/5, body/2, finish/1, error_response/2, error_response/3]).
-export([reason/1]).

-export_type([framing/0]).

-type framing() :: {length, non_neg_integer()}   % the app's Content-Length: bytes still due
                 | chunked                       % HTTP/1.1 without a Content-Length
                 | close                         % HTTP/1.0 without one: ends with the connection
                 | none.                         % HEAD, 1xx, 204, 304: no body at all

-type header() :: {binary(), binary()}.

%% @doc How the body of a response with `Status' and `Headers' to a request
%% of `Method' and `Version' is delimited.
-spec framing(binary(), {1, 0 | 1}, binary(), [header()]) -> framing().
framing(<<"HEAD">>, _Version, _Status, _Headers) ->
    none;
framing(_Method, Version, <<C1, C2, C3, _/binary>>, Headers) ->
    case {C1, C2, C3} of
        {$1, _, _} -> none;
        {$2, $0, $4} -> none;
        {$3, $0, $4} -> none;
        _ ->
            case content_length(Headers) of
                {ok, N} -> {length, N};
                none when Version =:= {1, 1} -> chunked;
                none -> close
            end
    end.

content_length([]) ->
    none;
content_length([{Name, Value} | Rest]) ->
    case lower(Name) of
        <<"content-length">> -> {ok, binary_to_integer(Value)};
        _ -> content_length(Rest)
    end.

%% @doc The status line and the headers. `KeepAlive' false adds
%% `Connection: close'; true on an HTTP/1.0 request adds `Connection: keep-alive'.
-spec head(binary(), [header()], framing(), boolean(), {1, 0 | 1}) -> iodata().
head(Status, Headers, Framing, KeepAlive, Version) ->
    {HasServer, HasDate} = lists:foldl(fun({Name, _}, {S, D}) ->
                                               case lower(Name) of
                                                   <<"server">> -> {true, D};
                                                   <<"date">> -> {S, true};
                                                   _ -> {S, D}
                                               end
                                       end, {false, false}, Headers),
    [<<"HTTP/1.1 ">>, Status, <<"\r\n">>,
     [[Name, <<": ">>, Value, <<"\r\n">>] || {Name, Value} <- Headers],
     [<<"Server: bodypipe\r\n">> || not HasServer],
     [[<<"Date: ">>, bodypipe_http_date:now(), <<"\r\n">>] || not HasDate],
     case Framing of
         chunked -> <<"Transfer-Encoding: chunked\r\n">>;
         _ -> <<>>
     end,
     case {KeepAlive, Version} of
         {false, _} -> <<"Connection: close\r\n">>;
         {true, {1, 0}} -> <<"Connection: keep-alive\r\n">>;
         {true, _} -> <<>>
     end,
     <<"\r\n">>].

%% @doc One body block as it goes out: the bytes to send, the framing after
%% it, and how many bytes of `Data' were dropped because they go beyond the
%% application's `Content-Length'.
-spec body(framing(), binary()) -> {iodata(), framing(), non_neg_integer()}.
body({length, Left}, Data) when byte_size(Data) =< Left ->
    {Data, {length, Left - byte_size(Data)}, 0};
body({length, Left}, Data) ->
    {binary:part(Data, 0, Left), {length, 0}, byte_size(Data) - Left};
body(chunked, <<>>) ->
    {[], chunked, 0};
body(chunked, Data) ->
    {[integer_to_binary(byte_size(Data), 16), <<"\r\n">>, Data, <<"\r\n">>], chunked, 0};
body(close, Data) ->
    {Data, close, 0};
body(none, _Data) ->
    {[], none, 0}.

%% @doc What ends the body (the last chunk of a chunked one).
-spec finish(framing()) -> iodata().
finish(chunked) -> <<"0\r\n\r\n">>;
finish(_) -> [].

%% @doc A complete plain-text response of the server's own, closing the
%% connection.
-spec error_response(100..599, {1, 0 | 1} | undefined) -> iodata().
error_response(Code, Version) ->
    error_response(Code, Version, []).

-spec error_response(100..599, {1, 0 | 1} | undefined, [header()]) -> iodata().
error_response(Code, _Version, Extra) ->
    Reason = reason(Code),
    Body = <<Reason/binary, "\n">>,
    [<<"HTTP/1.1 ">>, integer_to_binary(Code), <<" ">>, Reason, <<"\r\n">>,
     <<"Server: bodypipe\r\nDate: ">>, bodypipe_http_date:now(), <<"\r\n">>,
     <<"Content-Type: text/plain; charset=utf-8\r\n">>,
     [[Name, <<": ">>, Value, <<"\r\n">>] || {Name, Value} <- Extra],
     <<"Content-Length: ">>, integer_to_binary(byte_size(Body)), <<"\r\n">>,
     <<"Connection: close\r\n\r\n">>, Body].

%% @doc The reason phrase of the statuses the server answers itself (RFC 9110).
-spec reason(100..599) -> binary().
reason(400) -> <<"Bad Request">>;
reason(404) -> <<"Not Found">>;
reason(408) -> <<"Request Timeout">>;
reason(413) -> <<"Content Too Large">>;
reason(414) -> <<"URI Too Long">>;
reason(417) -> <<"Expectation Failed">>;
reason(431) -> <<"Request Header Fields Too Large">>;
reason(500) -> <<"Internal Server Error">>;
reason(501) -> <<"Not Implemented">>;
reason(503) -> <<"Service Unavailable">>;
reason(505) -> <<"HTTP Version Not Supported">>;
reason(Code) when Code >= 400, Code < 500 -> <<"Client Error">>;
reason(_) -> <<"Server Error">>.

%% ASCII lowercase (header names are tokens).
lower(Bin) ->
    << <<(case C >= $A andalso C =< $Z of true -> C + 32; false -> C end)>> || <<C>> <= Bin >>.
