%% @doc The request target (RFC 9112 §3.2) and the mounts it routes to.
%%
%% `parse/2' accepts the four forms and nothing else: origin-form (`/p?q'),
%% absolute-form (`http://host/p?q', any scheme), asterisk-form (`*', only for
%% `OPTIONS') and authority-form (`host:port', only for `CONNECT'); every
%% other target (a relative path, a byte outside visible ASCII) is a 400. The
%% path is percent-decoded once: the result is what routing matches the
%% mounts' prefixes against and what becomes `SCRIPT_NAME' + `PATH_INFO', so
%% `/b%61d/x' is routed to a `/bad' mount exactly as `/bad/x' is. Invalid
%% escapes (`%zz', a `%' near the end) are kept as they are. Dot segments are
%% not resolved (as in gunicorn): `/x/../bad' is not routed to `/bad'.
-module(bodypipe_http_target).

-export([parse/2, route/2, normalize_prefix/1, unquote/1]).

-export_type([target/0]).

-type target() :: #{path := binary(), query := binary()}.

%% @doc Splits `Target' into the decoded path and the raw query (without the
%% `?' and without any `#fragment').
%%
%% ```
%% {ok, #{path := <<"/a b">>, query := <<"x=%20">>}} =
%%     bodypipe_http_target:parse(<<"GET">>, <<"/a%20b?x=%20">>).
%% '''
-spec parse(binary(), binary()) -> {ok, target()} | {error, bad_target}.
parse(Method, Target) ->
    case visible_ascii(Target) of
        false -> {error, bad_target};
        true -> parse_form(Method, Target)
    end.

parse_form(<<"OPTIONS">>, <<"*">>) ->
    {ok, #{path => <<"*">>, query => <<>>}};
parse_form(_, <<"*">>) ->
    {error, bad_target};
parse_form(<<"CONNECT">>, Target) ->
    %% host:port, nothing else (no path, no userinfo).
    case binary:match(Target, [<<"/">>, <<"?">>, <<"#">>, <<"@">>]) of
        nomatch ->
            case binary:matches(Target, <<":">>) of
                [] ->
                    {error, bad_target};
                Colons ->
                    {Pos, 1} = lists:last(Colons),
                    Port = binary:part(Target, Pos + 1, byte_size(Target) - Pos - 1),
                    case Pos > 0 andalso Port =/= <<>> andalso digits(Port) of
                        true -> {ok, #{path => <<>>, query => <<>>}};
                        false -> {error, bad_target}
                    end
            end;
        _ ->
            {error, bad_target}
    end;
parse_form(_, <<"/", _/binary>> = Target) ->
    split(Target);
parse_form(_, Target) ->
    case absolute_path(Target) of
        {ok, PathAndQuery} -> split(PathAndQuery);
        error -> {error, bad_target}
    end.

%% scheme "://" authority [path-abempty] ["?" query]: returns what follows
%% the authority.
absolute_path(Target) ->
    case binary:split(Target, <<"://">>) of
        [Scheme, Rest] when Scheme =/= <<>> ->
            case scheme(Scheme) of
                true ->
                    case binary:match(Rest, [<<"/">>, <<"?">>, <<"#">>]) of
                        nomatch when Rest =/= <<>> -> {ok, <<>>};
                        {0, _} -> error;   % no authority
                        {Pos, _} -> {ok, binary:part(Rest, Pos, byte_size(Rest) - Pos)};
                        nomatch -> error
                    end;
                false ->
                    error
            end;
        _ ->
            error
    end.

%% RFC 3986: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )
scheme(<<C, Rest/binary>>) when (C >= $a andalso C =< $z); (C >= $A andalso C =< $Z) ->
    lists:all(fun(X) -> (X >= $a andalso X =< $z) orelse (X >= $A andalso X =< $Z)
                            orelse (X >= $0 andalso X =< $9) orelse X =:= $+ orelse X =:= $-
                            orelse X =:= $.
              end, binary_to_list(Rest));
scheme(_) ->
    false.

split(PathAndQuery) ->
    NoFragment = hd(binary:split(PathAndQuery, <<"#">>)),
    {RawPath, Query} = case binary:split(NoFragment, <<"?">>) of
                           [P, Q] -> {P, Q};
                           [P] -> {P, <<>>}
                       end,
    {ok, #{path => unquote(RawPath), query => Query}}.

digits(<<C, Rest/binary>>) when C >= $0, C =< $9 -> Rest =:= <<>> orelse digits(Rest);
digits(_) -> false.

visible_ascii(<<C, Rest/binary>>) when C > 16#20, C < 16#7f ->
    visible_ascii(Rest);
visible_ascii(<<>>) ->
    true;
visible_ascii(_) ->
    false.

%% @doc The mount for the decoded `Path': `{App, ScriptName, PathInfo}' of the
%% longest prefix that is `Path' itself or followed by `/' in it (`Mounts' are
%% sorted longest first; `<<>>' is the root). The asterisk-form (`*') and the
%% authority-form (path `<<>>') go to the root mount.
%%
%% ```
%% {<<"app">>, <<"/bad">>, <<"/x">>} =
%%     bodypipe_http_target:route(<<"/bad/x">>, [{<<"/bad">>, <<"app">>}, {<<>>, <<"root">>}]).
%% '''
-spec route(binary(), [{binary(), App}]) -> nomatch | {App, binary(), binary()}.
route(<<"*">>, Mounts) ->
    case lists:keyfind(<<>>, 1, Mounts) of
        {_, App} -> {App, <<>>, <<"*">>};
        false -> nomatch
    end;
route(_Path, []) ->
    nomatch;
route(Path, [{Prefix, App} | Rest]) ->
    N = byte_size(Prefix),
    case Path of
        <<Prefix:N/binary>> ->
            {App, Prefix, <<>>};
        <<Prefix:N/binary, $/, _/binary>> ->
            {App, Prefix, binary:part(Path, N, byte_size(Path) - N)};
        _ ->
            route(Path, Rest)
    end.

%% @doc A mount prefix as routing compares it: `""' and `"/"' are the root,
%% `"/x/"' is `"/x"'.
-spec normalize_prefix(iodata()) -> binary().
normalize_prefix(P0) ->
    P = iolist_to_binary(P0),
    Size = byte_size(P),
    case Size > 0 andalso binary:last(P) =:= $/ of
        true -> normalize_prefix(binary:part(P, 0, Size - 1));
        false -> P
    end.

%% @doc Percent-decoding (`%41' is `A'; invalid escapes are kept).
-spec unquote(binary()) -> binary().
unquote(Bin) ->
    case binary:match(Bin, <<"%">>) of
        nomatch -> Bin;
        _ -> unquote(Bin, <<>>)
    end.

unquote(<<$%, H, L, Rest/binary>>, Acc) ->
    case {hex(H), hex(L)} of
        {Hi, Lo} when is_integer(Hi), is_integer(Lo) -> unquote(Rest, <<Acc/binary, (Hi * 16 + Lo)>>);
        _ -> unquote(<<H, L, Rest/binary>>, <<Acc/binary, $%>>)
    end;
unquote(<<C, Rest/binary>>, Acc) ->
    unquote(Rest, <<Acc/binary, C>>);
unquote(<<>>, Acc) ->
    Acc.

hex(C) when C >= $0, C =< $9 -> C - $0;
hex(C) when C >= $a, C =< $f -> C - $a + 10;
hex(C) when C >= $A, C =< $F -> C - $A + 10;
hex(_) -> error.
