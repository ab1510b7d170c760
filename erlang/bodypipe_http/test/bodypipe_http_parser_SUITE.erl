%% Common Test suite for bodypipe_http_parser: the Erlang API of the request-head
%% parser and of the chunked decoder (the rules themselves are tested in the
%% Rust crate, `cargo test -p bodypipe-http'), with Python reading the buffers.
-module(bodypipe_http_parser_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-export([all/0, init_per_suite/1, end_per_suite/1]).
-export([head_map/1, head_more/1, head_refusals/1, head_limits/1, head_bad_args/1,
         head_rest_is_a_sub_binary/1, head_large_input_dirty/1,
         chunked_whole/1, chunked_cut_everywhere/1, chunked_errors/1, chunked_limits/1,
         chunked_bad_args/1, chunked_sticky_errors/1, chunked_buffer_refusals/1,
         chunked_full_resume_ring/1, chunked_large_feed_dirty/1,
         chunked_concurrent_feeds/1]).

all() ->
    [head_map, head_more, head_refusals, head_limits, head_bad_args,
     head_rest_is_a_sub_binary, head_large_input_dirty,
     chunked_whole, chunked_cut_everywhere, chunked_errors, chunked_limits,
     chunked_bad_args, chunked_sticky_errors, chunked_buffer_refusals,
     chunked_full_resume_ring, chunked_large_feed_dirty, chunked_concurrent_feeds].

init_per_suite(Config) ->
    {ok, _} = application:ensure_all_started(bodypipe),
    Data = list_to_binary(?config(data_dir, Config)),
    {ok, _} = py:eval(py:context(default), <<"__import__('sys').path.insert(0, d.decode())">>, #{<<"d">> => Data}),
    Config.

end_per_suite(_Config) ->
    ok.

%%--------------------------------------------------------------------
%% Heads

head_map(_Config) ->
    Req = <<"POST /up?x=1 HTTP/1.1\r\nHost: example.com\r\nX-Trace:  a b \r\n"
            "Content-Length: 5\r\nExpect: 100-continue\r\n\r\nhello">>,
    {ok, Head, <<"hello">>} = bodypipe_http_parser:parse_head(Req),
    #{method := <<"POST">>, target := <<"/up?x=1">>, version := {1, 1},
      headers := [{<<"host">>, <<"example.com">>}, {<<"x-trace">>, <<"a b">>},
                  {<<"content-length">>, <<"5">>}, {<<"expect">>, <<"100-continue">>}],
      body := {length, 5}, keep_alive := true, expect_continue := true} = Head,
    7 = maps:size(Head),
    {ok, #{body := chunked}, <<"0\r\n\r\n">>} =
        bodypipe_http_parser:parse_head(<<"PUT / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n0\r\n\r\n">>),
    {ok, #{body := none, version := {1, 0}, keep_alive := false}, <<>>} =
        bodypipe_http_parser:parse_head(<<"GET / HTTP/1.0\r\n\r\n">>),
    {ok, #{keep_alive := false}, _} =
        bodypipe_http_parser:parse_head(<<"GET / HTTP/1.1\r\nConnection: close\r\n\r\n">>),
    ok.

head_more(_Config) ->
    Req = <<"\r\nGET /x HTTP/1.1\r\nHost: a\r\n\r\n">>,
    [more = bodypipe_http_parser:parse_head(binary:part(Req, 0, N)) || N <- lists:seq(0, byte_size(Req) - 1)],
    {ok, #{target := <<"/x">>}, <<>>} = bodypipe_http_parser:parse_head(Req),
    ok.

head_refusals(_Config) ->
    Cases = [{<<"GET / HTTP/1.1\r\nContent-Length: +3\r\n\r\n">>, 400, bad_content_length},
             {<<"GET / HTTP/1.1\r\nContent-Length: 0, 5\r\n\r\n">>, 400, bad_content_length},
             {<<"GET / HTTP/1.1\r\nContent-Length: 0 5\r\n\r\n">>, 400, bad_content_length},
             {<<"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n">>, 400, bad_content_length},
             {<<"GET / HTTP/1.1\r\nContent-Length: abc\r\n\r\n">>, 400, bad_content_length},
             {<<"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n">>,
              400, content_length_with_transfer_encoding},
             {<<"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n">>, 501, unsupported_transfer_encoding},
             {<<"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n">>, 400, chunked_not_final},
             {<<"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n">>, 400, transfer_encoding_in_http10},
             {<<"GET / HTTP/1.1\r\nLong: a\r\n b\r\n\r\n">>, 400, obs_fold},
             {<<"GET / HTTP/1.1\r\nX: a", 1, "b\r\n\r\n">>, 400, bad_header_value},
             {<<"GET / HTTP/1.1\r\nX y: a\r\n\r\n">>, 400, bad_header_name},
             {<<"GET / HTTP/1.1\nX: a\r\n\r\n">>, 400, bad_line_ending},
             {<<"GET  / HTTP/1.1\r\n\r\n">>, 400, bad_request_line},
             {<<"GET foo HTTP/1.1\r\n\r\n">>, 400, bad_target},
             {<<"GET / HTTP/2.0\r\n\r\n">>, 505, unsupported_version},
             {<<"GET / HTTP/1.x\r\n\r\n">>, 400, bad_version},
             {<<"PUT / HTTP/1.1\r\nExpect: teapot\r\n\r\n">>, 417, expectation_failed},
             {<<"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n">>, 400, bad_host},
             {<<"GET /", (binary:copy(<<"a">>, 9000))/binary>>, 414, request_line_too_long},
             {<<"GET / HTTP/1.1\r\nX: ", (binary:copy(<<"a">>, 9000))/binary>>, 431, header_line_too_long},
             {iolist_to_binary(["GET / HTTP/1.1\r\n", [["X: 1\r\n"] || _ <- lists:seq(1, 101)], "\r\n"]),
              431, too_many_headers},
             {iolist_to_binary(["GET / HTTP/1.1\r\n", [["X: ", binary:copy(<<"a">>, 8000), "\r\n"] || _ <- lists:seq(1, 9)]]),
              431, head_too_large}],
    [{Req, {error, Status, Reason}} = {Req, bodypipe_http_parser:parse_head(Req)} || {Req, Status, Reason} <- Cases],
    ok.

head_limits(_Config) ->
    Req = <<"GET /abc HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n">>,
    {ok, _, <<>>} = bodypipe_http_parser:parse_head(Req, #{max_headers => 3}),
    {error, 431, too_many_headers} = bodypipe_http_parser:parse_head(Req, #{max_headers => 2}),
    {error, 414, request_line_too_long} = bodypipe_http_parser:parse_head(Req, #{max_request_line => 16}),
    {ok, _, <<>>} = bodypipe_http_parser:parse_head(Req, #{max_request_line => 17}),
    {error, 431, header_line_too_long} = bodypipe_http_parser:parse_head(Req, #{max_header_line => 3}),
    {error, 431, head_too_large} = bodypipe_http_parser:parse_head(Req, #{max_head_size => byte_size(Req) - 1}),
    {ok, _, <<>>} = bodypipe_http_parser:parse_head(Req, #{max_head_size => byte_size(Req)}),
    %% An incomplete head over the limit is refused without waiting for its end.
    {error, 431, head_too_large} = bodypipe_http_parser:parse_head(binary:part(Req, 0, 30), #{max_head_size => 29}),
    ok.

head_bad_args(_Config) ->
    ?assertError(badarg, bodypipe_http_parser:parse_head("GET / HTTP/1.1\r\n\r\n")),
    ?assertError(badarg, bodypipe_http_parser:parse_head(<<>>, #{max_headers => 0})),
    ?assertError(badarg, bodypipe_http_parser:parse_head(<<>>, #{max_headers => -1})),
    ?assertError(badarg, bodypipe_http_parser:parse_head(<<>>, #{max_headers => 1.5})),
    ?assertError(badarg, bodypipe_http_parser:parse_head(<<>>, #{no_such_limit => 1})),
    ?assertError(badarg, bodypipe_http_parser:parse_head(<<>>, [])),
    ?assertError(badarg, bodypipe_http_parser:parse_head(<<>>, #{max_headers => 1 bsl 70})),
    ok.

%% Rest refers to the input binary rather than copying it.
head_rest_is_a_sub_binary(_Config) ->
    Body = binary:copy(<<"x">>, 100000),
    Req = <<"POST / HTTP/1.1\r\nContent-Length: 100000\r\n\r\n", Body/binary>>,
    {ok, _, Rest} = bodypipe_http_parser:parse_head(Req),
    Body = Rest,
    true = binary:referenced_byte_size(Rest) =:= byte_size(Req),
    ok.

%% A head limit above 256 KiB makes a large input go to a dirty scheduler.
head_large_input_dirty(_Config) ->
    Fields = [["X-", integer_to_binary(I), ": ", binary:copy(<<"v">>, 8000), "\r\n"] || I <- lists:seq(1, 40)],
    Req = iolist_to_binary(["GET / HTTP/1.1\r\n", Fields, "\r\n", "tail"]),
    true = byte_size(Req) > 256 * 1024,
    Limits = #{max_head_size => 1 bsl 20},
    dirty = bodypipe_nif:http_parse_head(Req, 8192, 8192, 100, 1 bsl 20),
    {ok, #{headers := Headers}, <<"tail">>} = bodypipe_http_parser:parse_head(Req, Limits),
    40 = length(Headers),
    %% With the default limit only the first 64 KiB are looked at: no dirty call needed.
    {error, 431, head_too_large} = bodypipe_nif:http_parse_head(Req, 8192, 8192, 100, 65536),
    ok.

%%--------------------------------------------------------------------
%% Chunked bodies

chunked_whole(_Config) ->
    {ok, Buf} = py_buffer:new(),
    D = bodypipe_http_parser:chunked_new(),
    Input = <<"5;a=b\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 1\r\n\r\nGET / HTTP/1.1\r\n">>,
    {done, <<"GET / HTTP/1.1\r\n">> = Rest} = bodypipe_http_parser:chunked_feed(D, Buf, Input),
    true = binary:referenced_byte_size(Rest) =:= byte_size(Input),
    %% The decoder does not close the buffer; the caller does.
    #{writer_closed := false, written := 11} = py_buffer:info(Buf),
    %% After the end, a feed takes nothing.
    {done, <<"more">>} = bodypipe_http_parser:chunked_feed(D, Buf, <<"more">>),
    ok = py_buffer:close(Buf),
    {ok, <<"hello world">>} = py:call(bp_parser, read_all, [Buf]),
    ok.

%% Every cut of the input into two feeds, and one byte per feed.
chunked_cut_everywhere(_Config) ->
    Input = <<"3;x=\"y z\"\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nT: v\r\n\r\nNEXT">>,
    Expected = <<"abc0123456789abcdef">>,
    Run = fun(Pieces) ->
                  {ok, Buf} = py_buffer:new(),
                  D = bodypipe_http_parser:chunked_new(),
                  Result = feed_all(D, Buf, Pieces),
                  ok = py_buffer:close(Buf),
                  {ok, Body} = py:call(bp_parser, read_all, [Buf]),
                  {Result, Body}
          end,
    [{{done, <<"NEXT">>}, Expected} = Run([binary:part(Input, 0, N), binary:part(Input, N, byte_size(Input) - N)])
     || N <- lists:seq(0, byte_size(Input))],
    {{done, <<"NEXT">>}, Expected} = Run([<<B>> || <<B>> <= Input]),
    ok.

%% Feeds pieces in order; returns the first answer that is not `more', with the
%% unfed pieces appended to its rest.
feed_all(_D, _Buf, []) ->
    more;
feed_all(D, Buf, [P | Ps]) ->
    case bodypipe_http_parser:chunked_feed(D, Buf, P) of
        more -> feed_all(D, Buf, Ps);
        {done, Rest} -> {done, iolist_to_binary([Rest | Ps])};
        Other -> Other
    end.

chunked_errors(_Config) ->
    Cases = [{<<"+5\r\nhello\r\n0\r\n\r\n">>, bad_chunk_size},
             {<<"-5\r\nhello\r\n0\r\n\r\n">>, bad_chunk_size},
             {<<"\r\nhello\r\n0\r\n\r\n">>, bad_chunk_size},
             {<<"5 \r\nhello\r\n0\r\n\r\n">>, bad_chunk_size},
             {<<"00000000000000005\r\nhello\r\n0\r\n\r\n">>, chunk_size_too_long},
             {<<"5;\r\nhello\r\n0\r\n\r\n">>, bad_chunk_extension},
             {<<"5;", (binary:copy(<<"a">>, 8190))/binary, "\r\nhello\r\n0\r\n\r\n">>, chunk_line_too_long},
             {<<"5\nhello\r\n0\r\n\r\n">>, bad_line_ending},
             {<<"5\r\nhelloXX0\r\n\r\n">>, bad_chunk_terminator},
             {<<"0\r\n folded\r\n\r\n">>, bad_trailer},
             {<<"0\r\nContent-Length: 9\r\n\r\n">>, forbidden_trailer},
             {iolist_to_binary(["0\r\n", [["X: 1\r\n"] || _ <- lists:seq(1, 101)], "\r\n"]), too_many_trailers},
             {iolist_to_binary(["0\r\n", [["X: ", binary:copy(<<"a">>, 4000), "\r\n"] || _ <- lists:seq(1, 5)], "\r\n"]),
              trailers_too_large}],
    [begin
         {ok, Buf} = py_buffer:new(),
         {Input, {error, {bad_chunk, Why}}} =
             {Input, bodypipe_http_parser:chunked_feed(bodypipe_http_parser:chunked_new(), Buf, Input)}
     end || {Input, Why} <- Cases],
    ok.

chunked_limits(_Config) ->
    {ok, Buf} = py_buffer:new(),
    Small = bodypipe_http_parser:chunked_new(#{max_chunk_line => 4}),
    {error, {bad_chunk, chunk_line_too_long}} = bodypipe_http_parser:chunked_feed(Small, Buf, <<"5;a=b\r\n">>),
    NoTrailers = bodypipe_http_parser:chunked_new(#{max_trailers => 0}),
    {error, {bad_chunk, too_many_trailers}} = bodypipe_http_parser:chunked_feed(NoTrailers, Buf, <<"0\r\nX: 1\r\n\r\n">>),
    Tiny = bodypipe_http_parser:chunked_new(#{max_trailer_size => 8}),
    {error, {bad_chunk, trailers_too_large}} = bodypipe_http_parser:chunked_feed(Tiny, Buf, <<"0\r\nX: 1234\r\n\r\n">>),
    Fits = bodypipe_http_parser:chunked_new(#{max_trailer_size => 9}),
    {done, <<>>} = bodypipe_http_parser:chunked_feed(Fits, Buf, <<"0\r\nX: 1234\r\n\r\n">>),
    ok.

chunked_bad_args(_Config) ->
    {ok, Buf} = py_buffer:new(),
    D = bodypipe_http_parser:chunked_new(),
    ?assertError(badarg, bodypipe_http_parser:chunked_new(#{max_chunk_line => 0})),
    ?assertError(badarg, bodypipe_http_parser:chunked_new(#{max_trailers => -1})),
    ?assertError(badarg, bodypipe_http_parser:chunked_new(#{bogus => 1})),
    ?assertError(badarg, bodypipe_http_parser:chunked_new(not_a_map)),
    ?assertError(badarg, bodypipe_http_parser:chunked_feed(D, Buf, "iolist")),
    ?assertError(badarg, bodypipe_http_parser:chunked_feed(D, make_ref(), <<"0\r\n\r\n">>)),
    ?assertError(badarg, bodypipe_http_parser:chunked_feed(Buf, Buf, <<"0\r\n\r\n">>)),
    %% The decoder took nothing from the bad calls.
    {done, <<>>} = bodypipe_http_parser:chunked_feed(D, Buf, <<"0\r\n\r\n">>),
    ok.

chunked_sticky_errors(_Config) ->
    {ok, Buf} = py_buffer:new(),
    D = bodypipe_http_parser:chunked_new(),
    {error, {bad_chunk, bad_chunk_size}} = bodypipe_http_parser:chunked_feed(D, Buf, <<"zz\r\n">>),
    {error, {bad_chunk, bad_chunk_size}} = bodypipe_http_parser:chunked_feed(D, Buf, <<"0\r\n\r\n">>),
    #{written := 0} = py_buffer:info(Buf),
    ok.

chunked_buffer_refusals(_Config) ->
    %% max_size reached: too_large, then the decoder is done for.
    {ok, Small} = py_buffer:new(#{max_size => 4}),
    D1 = bodypipe_http_parser:chunked_new(),
    {error, too_large} = bodypipe_http_parser:chunked_feed(D1, Small, <<"5\r\nhello\r\n">>),
    {error, decoder_failed} = bodypipe_http_parser:chunked_feed(D1, Small, <<"0\r\n\r\n">>),
    %% The buffer was closed (or aborted) by its owner.
    {ok, Closed} = py_buffer:new(),
    ok = py_buffer:close(Closed),
    {error, closed} = bodypipe_http_parser:chunked_feed(bodypipe_http_parser:chunked_new(), Closed, <<"1\r\nx">>),
    %% The reader hung up.
    {ok, Hung} = py_buffer:new(),
    {ok, none} = py:call(bp_parser, close, [Hung]),
    {error, closed} = bodypipe_http_parser:chunked_feed(bodypipe_http_parser:chunked_new(), Hung, <<"1\r\nx">>),
    %% Framing bytes alone write nothing, so they are taken even then.
    {ok, Aborted} = py_buffer:new(),
    ok = py_buffer:abort(Aborted, gone),
    more = bodypipe_http_parser:chunked_feed(bodypipe_http_parser:chunked_new(), Aborted, <<"1;a">>),
    ok.

%% A ring buffer with a tiny high-water mark: {full, Rest} again and again, each
%% resumed with exactly Rest after {py_buffer, Buf, writable}, while Python reads.
chunked_full_resume_ring(_Config) ->
    Body = crypto:strong_rand_bytes(200000),
    Input = iolist_to_binary([encode_chunked(Body, 1), "NEXT"]),
    {ok, Buf} = py_buffer:new(#{max_buffered => 64}),
    Self = self(),
    Reader = spawn_link(fun() ->
                                Self ! {self(), py:call(bp_parser, read_all, [Buf])}
                        end),
    D = bodypipe_http_parser:chunked_new(),
    %% Socket-sized pieces, cut at arbitrary places (inside lines and CRLFs too).
    {Rest, Fulls} = feed_ring(D, Buf, pieces(Input, 1), 0),
    <<"NEXT">> = Rest,
    ok = py_buffer:close(Buf),
    receive {Reader, {ok, Read}} -> Body = Read end,
    ct:comment("~p times full", [Fulls]),
    true = Fulls > 0,
    ok.

feed_ring(_D, _Buf, [], _Fulls) ->
    ct:fail(body_not_done);
feed_ring(D, Buf, [P | Ps], Fulls) ->
    case bodypipe_http_parser:chunked_feed(D, Buf, P) of
        more ->
            feed_ring(D, Buf, Ps, Fulls);
        {full, Rest} ->
            ok = py_buffer:notify_writable(Buf),
            receive {py_buffer, Buf, writable} -> ok end,
            feed_ring(D, Buf, [Rest | Ps], Fulls + 1);
        {done, Rest} ->
            {iolist_to_binary([Rest | Ps]), Fulls}
    end.

%% One feed of several MiB goes to a dirty scheduler (the NIF itself says so)
%% and decodes whole.
chunked_large_feed_dirty(_Config) ->
    Body = crypto:strong_rand_bytes(3 bsl 20),
    Input = encode_chunked(Body, 2),
    {ok, Buf} = py_buffer:new(),
    D = bodypipe_http_parser:chunked_new(),
    dirty = bodypipe_nif:http_chunked_feed(D, Buf, Input),
    {done, <<>>} = bodypipe_http_parser:chunked_feed(D, Buf, Input),
    ok = py_buffer:close(Buf),
    {ok, Body} = py:call(bp_parser, read_all, [Buf]),
    ok.

%% Feeds of one decoder from two processes are serialized: one body, whole.
chunked_concurrent_feeds(_Config) ->
    Chunk = <<"4\r\nabcd\r\n">>,
    {ok, Buf} = py_buffer:new(),
    D = bodypipe_http_parser:chunked_new(),
    Self = self(),
    Big = binary:copy(Chunk, 40000),
    Pids = [spawn_link(fun() ->
                               R = [bodypipe_http_parser:chunked_feed(D, Buf, B) || B <- [Big, Chunk, Big]],
                               Self ! {self(), R}
                       end) || _ <- [1, 2]],
    [receive {P, [more, more, more]} -> ok end || P <- Pids],
    {done, <<>>} = bodypipe_http_parser:chunked_feed(D, Buf, <<"0\r\n\r\n">>),
    #{written := Written} = py_buffer:info(Buf),
    Written = 2 * (40000 * 2 + 1) * 4,
    ok.

%%--------------------------------------------------------------------
%% Helpers

%% Chunked encoding of Body in chunks of pseudo-random sizes (seeded).
encode_chunked(Body, Seed) ->
    rand:seed(exsss, {Seed, Seed, Seed}),
    iolist_to_binary([encode_chunks(Body), "0\r\n\r\n"]).

encode_chunks(<<>>) ->
    [];
encode_chunks(Body) ->
    N = min(byte_size(Body), rand:uniform(70000)),
    <<C:N/binary, Rest/binary>> = Body,
    [integer_to_binary(N, 16), ";n=", integer_to_binary(N), "\r\n", C, "\r\n" | encode_chunks(Rest)].

%% Input cut into pieces of pseudo-random sizes up to 64 KiB.
pieces(<<>>, _Seed) ->
    [];
pieces(Input, Seed) ->
    rand:seed(exsss, {Seed, 7, 7}),
    pieces(Input).

pieces(<<>>) ->
    [];
pieces(Input) ->
    N = min(byte_size(Input), rand:uniform(65536)),
    <<P:N/binary, Rest/binary>> = Input,
    [P | pieces(Rest)].
