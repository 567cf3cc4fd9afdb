/* Unit tests for lib/htmltext: table of HTML inputs with their exact text,
 * then stats, limits (deep nesting, huge attributes, output maximum) and
 * hostile input. */
#include "htmltext.h"
#include "testutil.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { EN = 1, PLAIN = 2 }; /* flags: English notices, no defanging */

struct tcase {
    const char *name;
    int flags;
    const char *html;
    const char *text;
};

static const struct tcase cases[] = {
    /* --- basic structure --- */
    {"empty", 0, "", ""},
    {"only whitespace", 0, "  \n\t ", ""},
    {"plain text", 0, "hello world", "hello world\n"},
    {"collapse", 0, "<p>  a \n\t b   c </p>", "a b c\n"},
    {"paragraphs", 0, "<p>one</p><p>two</p>", "one\n\ntwo\n"},
    {"divs", 0, "<div>one</div><div>two</div>", "one\ntwo\n"},
    {"br", 0, "a<br>b<br/>c", "a\nb\nc\n"},
    {"br runs", 0, "a<br><br><br><br>b", "a\n\nb\n"},
    {"br at end of block", 0, "<div>a<br></div><div>b</div>", "a\nb\n"},
    {"br between blocks", 0, "<div>a</div><br><div>b</div>", "a\n\nb\n"},
    {"leading and trailing breaks", 0, "<br><br><p>x</p><br><br>", "x\n"},
    {"headings", 0, "text<h1>Title</h1>more<h2>Sub</h2><p>para</p>",
     "text\n\nTitle\n\nmore\n\nSub\n\npara\n"},
    {"inline", 0, "<p>a<b>b</b><i> c</i> <span>d</span></p>", "ab c d\n"},
    {"hr", 0, "<div>a</div><hr>b", "a\n--------------------\nb\n"},
    {"entities", 0, "<p>&lt;tag&gt; &amp; &quot;q&quot; &copy; &#x41;&#66; &mdash; &unknown;</p>",
     "<tag> & \"q\" \xc2\xa9 AB \xe2\x80\x94 &unknown;\n"},
    {"nbsp does not collapse", 0, "<p>a&nbsp;&nbsp;&nbsp;b</p><p>&nbsp;&nbsp;indent</p>",
     "a   b\n\n  indent\n"},
    {"nbsp only paragraphs are blank lines", 0,
     "<div>a</div><div>&nbsp;</div><div>&nbsp;</div><div>&nbsp;</div><div>b</div>",
     "a\n\nb\n"},
    {"trailing spaces trimmed", 0, "<p>a&nbsp;&nbsp;</p>", "a\n"},
    {"zero-width and bidi removed", 0,
     "<p>pay\xe2\x80\x8bpal \xe2\x80\xaetxt.exe \xef\xbb\xbfok\xc2\xad!</p>",
     "paypal txt.exe ok!\n"},
    {"ideographic space kept", 0, "<p>\xe5\x85\xa8\xe3\x80\x80\xe8\xa7\x92</p>",
     "\xe5\x85\xa8\xe3\x80\x80\xe8\xa7\x92\n"},
    {"japanese", 0,
     "<p>\xe3\x81\x93\xe3\x82\x93\xe3\x81\xab\xe3\x81\xa1\xe3\x81\xaf<b>\xe4\xb8\x96\xe7\x95\x8c"
     "</b>\xe3\x80\x82</p>",
     "\xe3\x81\x93\xe3\x82\x93\xe3\x81\xab\xe3\x81\xa1\xe3\x81\xaf\xe4\xb8\x96\xe7\x95\x8c"
     "\xe3\x80\x82\n"},
    {"pre keeps whitespace", 0, "<p>x</p><pre>\n  a   b\n\tc  \n</pre><p>y</p>",
     "x\n\n  a   b\n\tc\n\ny\n"},
    {"pre with entities and tags", 0, "<pre>if (a &lt; b)\n    <b>x</b>;</pre>",
     "if (a < b)\n    x;\n"},
    {"blockquote", 0, "<p>reply</p><blockquote><div>q1</div><div><br></div><div>q2</div>"
                      "<blockquote>qq</blockquote></blockquote><p>end</p>",
     "reply\n\n> q1\n>\n> q2\n> > qq\n\nend\n"},

    /* --- lists and tables --- */
    {"ul", 0, "<ul><li>one</li><li>two</li></ul>", "\xe3\x83\xbb one\n\xe3\x83\xbb two\n"},
    {"ol", 0, "<ol><li>one<li>two<li>three</ol>", "1. one\n2. two\n3. three\n"},
    {"ol start and value", 0, "<ol start=\"5\"><li>a</li><li value=\"9\">b</li><li>c</li></ol>",
     "5. a\n9. b\n10. c\n"},
    {"nested lists", 0,
     "<ul><li>a<ul><li>a1</li><li>a2<ol><li>x</li></ol></li></ul></li><li>b</li></ul>",
     "\xe3\x83\xbb a\n   \xe3\x83\xbb a1\n   \xe3\x83\xbb a2\n      1. x\n\xe3\x83\xbb b\n"},
    {"li with paragraphs", 0, "<ol><li><p>first</p><p>more</p></li><li><p>second</p></li></ol>",
     "1. first\n   more\n2. second\n"},
    {"empty li", 0, "<ul><li></li><li>x</li></ul>", "\xe3\x83\xbb x\n"},
    {"dl", 0, "<dl><dt>term</dt><dd>definition</dd></dl>", "term\n  definition\n"},
    {"table", 0,
     "<table><tr><th>Name</th><th>Age</th></tr><tr><td>Taro</td><td>30</td></tr></table>",
     "Name | Age\nTaro | 30\n"},
    {"table empty cells skipped", 0, "<table><tr><td>a</td><td></td><td> </td><td>b</td></tr></table>",
     "a | b\n"},
    {"table cells with paragraphs", 0,
     "<table><tr><td><p class=MsoNormal>a</p></td><td><p class=MsoNormal>b</p></td></tr>"
     "<tr><td><p>c</p></td><td><div>d</div></td></tr></table>",
     "a | b\nc | d\n"},
    {"layout tables", 0,
     "<table width=600><tr><td><table><tr><td>Logo</td></tr></table></td></tr>"
     "<tr><td><table><tr><td>Left</td><td>Right</td></tr><tr><td colspan=2>Footer</td></tr>"
     "</table></td></tr></table>",
     "Logo\nLeft | Right\nFooter\n"},
    {"caption", 0, "<table><caption>Cap</caption><tr><td>1</td><td>2</td></tr></table>",
     "Cap\n1 | 2\n"},

    /* --- dropped content --- */
    {"script style", 0, "a<script>alert('x')</script>b<style>p{color:red}</style>c", "abc\n"},
    {"head and title", 0, "<html><head><title>Secret title</title><meta charset=utf-8></head>"
                          "<body>body</body></html>",
     "body\n"},
    {"embedded content", 0,
     "1<iframe src=x>i</iframe>2<object>o</object>3<embed src=x>4<applet>a</applet>"
     "5<svg><text>s</text></svg>6<math><mi>m</mi></math>7<video>v</video>8<audio>a</audio>"
     "9<canvas>c</canvas>0<template>t</template><noscript>n</noscript><source>s<track>t",
     "1234567890st\n"},
    {"form dropped", 0, "<p>before</p><form action=x>Name: <input name=n><button>Send</button>"
                        "<select><option>o</select><textarea>t</textarea></form><p>after</p>",
     "before\n\nafter\n"},
    {"controls outside form", 0, "a<button>Click</button>b<textarea>t</textarea>c", "abc\n"},
    {"comments", 0, "a<!-- hidden -->b<!--[if mso]>mso only<![endif]-->c", "abc\n"},
    {"hidden", 0,
     "<div style=\"display: none; max-height:0\">preheader</div><p hidden>h</p>"
     "<span style='VISIBILITY:hidden'>v</span><div style='mso-hide:all'>m</div>shown",
     "shown\n"},

    /* --- images --- */
    {"img alt", 0, "<p>Logo: <img src=x alt=\"  City   Hall \"></p>",
     "Logo: [\xe7\x94\xbb\xe5\x83\x8f: City Hall]\n"},
    {"img no alt", 0, "<p><img src=x> <img src=y alt=''></p>",
     "[\xe7\x94\xbb\xe5\x83\x8f] [\xe7\x94\xbb\xe5\x83\x8f]\n"},
    {"img english", EN, "<img src=x alt=Logo><img src=y>", "[image: Logo][image]\n"},
    {"tracking pixel", 0, "a<img src=t width=1 height=1>b", "ab\n"},

    /* --- links --- */
    {"link defanged", 0, "<a href=\"https://www.example.com/path?q=1\">here</a>",
     "here [hxxps://www[.]example[.]com/path?q=1]\n"},
    {"link plain", PLAIN, "<a href=\"https://www.example.com/path\">here</a>",
     "here [https://www.example.com/path]\n"},
    {"link http ftp", 0, "<a href='http://a.example/'>a</a> <a href='FTP://f.example/x'>f</a>",
     "a [hxxp://a[.]example/] f [fxp://f[.]example/x]\n"},
    {"link text is the url", 0,
     "<p>See <a href=\"https://city.example.lg.jp/info\">https://city.example.lg.jp/info</a>.</p>",
     "See hxxps://city[.]example[.]lg[.]jp/info.\n"},
    {"link text is the url plain", PLAIN,
     "<a href=\"https://city.example.lg.jp/info/\">https://city.example.lg.jp/info</a>",
     "https://city.example.lg.jp/info\n"},
    {"link text is url without scheme", 0,
     "<a href=\"http://www.example.jp/\">www.example.jp</a>", "hxxp://www[.]example[.]jp/\n"},
    {"mailto", 0, "<a href=\"mailto:user@host.example?subject=a.b\">mail us</a>",
     "mail us [mailto:user@host[.]example?subject=a.b]\n"},
    {"mailto text is address", 0, "<a href=\"mailto:info@city.example.jp\">info@city.example.jp</a>",
     "info@city[.]example[.]jp\n"},
    {"mailto plain", PLAIN, "<a href=\"mailto:user@host.example\">mail</a>",
     "mail [mailto:user@host.example]\n"},
    {"tel", 0, "<a href=\"tel:+81-3-1234-5678\">call</a>", "call [tel:+81-3-1234-5678]\n"},
    {"javascript", 0, "<a href=\"javascript:alert(document.cookie)\">click</a>",
     "click [\xe3\x83\xaa\xe3\x83\xb3\xe3\x82\xaf\xe5\x85\x88: javascript "
     "(\xe7\x84\xa1\xe5\x8a\xb9\xe5\x8c\x96)]\n"},
    {"javascript obfuscated", EN, "<a href=\" JaVa\nScRiPt:alert(1)\">x</a> "
                                  "<a href=\"data:text/html;base64,AAAA\">y</a> "
                                  "<a href=\"vbscript:x\">z</a> <a href=\"file:///c:/x\">w</a>",
     "x [link: javascript (disabled)] y [link: data (disabled)] z [link: vbscript (disabled)] "
     "w [link: file (disabled)]\n"},
    {"javascript entity encoded", EN, "<a href=\"&#106;avascript&#58;alert(1)\">x</a>",
     "x [link: javascript (disabled)]\n"},
    {"relative and fragment", EN, "<a href=\"#top\">top</a> <a href=\"/path\">rel</a> <a href=\"\">e</a>",
     "top rel [link: relative URL (disabled)] e\n"},
    {"protocol relative", 0, "<a href=\"//cdn.example/x\">c</a>", "c [//cdn[.]example/x]\n"},
    {"scheme without slashes", 0, "<a href=\"https:evil.example/a\">x</a>",
     "x [hxxps://evil[.]example/a]\n"},
    {"backslashes", 0, "<a href=\"https:\\\\evil.example\\@good.example/\">x</a>",
     "x [hxxps://evil[.]example\\@good.example/]\n"},
    {"userinfo trick", 0, "<a href=\"https://www.paypal.com@evil.example/\">login</a>",
     "login [hxxps://www[.]paypal[.]com@evil[.]example/]\n"},
    {"url with spaces", 0, "<a href=\"https://a.example/my file.pdf\">f</a>",
     "f [hxxps://a[.]example/my%20file.pdf]\n"},
    {"a without href", 0, "<a name=\"top\">anchor</a>", "anchor\n"},
    {"image link", 0, "<a href=\"https://shop.example/\"><img src=x alt=\"Shop\"></a>",
     "[\xe7\x94\xbb\xe5\x83\x8f: Shop] [hxxps://shop[.]example/]\n"},
    {"empty link", 0, "a <a href=\"https://x.example/\"></a> b", "a [hxxps://x[.]example/] b\n"},
    {"punycode as is", 0, "<a href=\"https://xn--pypal-4ve.com/\">login</a>",
     "login [hxxps://xn--pypal-4ve[.]com/]\n"},

    /* --- phishing --- */
    {"mismatch ja", 0, "<p>Log in at <a href=\"https://evil.example/login\">www.paypal.com</a> now</p>",
     "Log in at www[.]paypal[.]com [hxxps://evil[.]example/login]\n"
     "\xe2\x9a\xa0 \xe6\xb3\xa8\xe6\x84\x8f: \xe8\xa1\xa8\xe7\xa4\xba\xe3\x81\x95\xe3\x82\x8c\xe3\x81\xa6"
     "\xe3\x81\x84\xe3\x82\x8b\xe3\x83\xaa\xe3\x83\xb3\xe3\x82\xaf\xe5\x85\x88 (www[.]paypal[.]com) "
     "\xe3\x81\xa8\xe5\xae\x9f\xe9\x9a\x9b\xe3\x81\xae\xe3\x83\xaa\xe3\x83\xb3\xe3\x82\xaf\xe5\x85\x88 "
     "(evil[.]example) \xe3\x81\x8c\xe7\x95\xb0\xe3\x81\xaa\xe3\x82\x8a\xe3\x81\xbe\xe3\x81\x99\n"
     "now\n"},
    {"mismatch en url text", EN, "<a href=\"http://203.0.113.5/b\">https://bank.example/login</a>",
     "hxxps://bank[.]example/login [hxxp://203[.]0[.]113[.]5/b]\n"
     "\xe2\x9a\xa0 Warning: the link text shows bank[.]example but the link goes to 203[.]0[.]113[.]5\n"},
    {"mismatch plain", EN | PLAIN, "<a href=\"https://evil.example/\">paypal.com</a>",
     "paypal.com [https://evil.example/]\n"
     "\xe2\x9a\xa0 Warning: the link text shows paypal.com but the link goes to evil.example\n"},
    {"match ignoring case and www", EN, "<a href=\"https://PayPal.com/x\">WWW.PAYPAL.COM</a>",
     "WWW[.]PAYPAL[.]COM [hxxps://PayPal[.]com/x]\n"},
    {"match subdomain of named host", EN, "<a href=\"https://login.bank.example/\">bank.example</a>",
     "bank[.]example [hxxps://login[.]bank[.]example/]\n"},
    {"mismatch lookalike suffix", EN, "<a href=\"https://paypal.com.evil.example/\">paypal.com</a>",
     "paypal[.]com [hxxps://paypal[.]com[.]evil[.]example/]\n"
     "\xe2\x9a\xa0 Warning: the link text shows paypal[.]com but the link goes to "
     "paypal[.]com[.]evil[.]example\n"},
    {"mismatch userinfo", EN, "<a href=\"https://www.paypal.com@evil.example/\">www.paypal.com</a>",
     "www[.]paypal[.]com [hxxps://www[.]paypal[.]com@evil[.]example/]\n"
     "\xe2\x9a\xa0 Warning: the link text shows www[.]paypal[.]com but the link goes to evil[.]example\n"},
    {"mismatch mail address", EN, "<a href=\"mailto:x@evil.example\">support@bank.example</a>",
     "support@bank[.]example [mailto:x@evil[.]example]\n"
     "\xe2\x9a\xa0 Warning: the link text shows bank[.]example but the link goes to evil[.]example\n"},
    {"mismatch fullwidth text", EN,
     "<a href=\"https://evil.example/\">\xef\xbd\x90\xef\xbd\x81\xef\xbd\x99\xef\xbd\x90\xef\xbd\x81"
     "\xef\xbd\x8c\xef\xbc\x8e\xef\xbd\x83\xef\xbd\x8f\xef\xbd\x8d</a>",
     "\xef\xbd\x90\xef\xbd\x81\xef\xbd\x99\xef\xbd\x90\xef\xbd\x81\xef\xbd\x8c\xef\xbc\x8e\xef\xbd\x83"
     "\xef\xbd\x8f\xef\xbd\x8d [hxxps://evil[.]example/]\n"
     "\xe2\x9a\xa0 Warning: the link text shows \xef\xbd\x90\xef\xbd\x81\xef\xbd\x99\xef\xbd\x90"
     "\xef\xbd\x81\xef\xbd\x8c\xef\xbc\x8e\xef\xbd\x83\xef\xbd\x8f\xef\xbd\x8d but the link goes to "
     "evil[.]example\n"},
    {"idn text matches punycode href", EN,
     "<a href=\"https://xn--eckwd4c7c.xn--zckzah/\">\xe3\x83\x89\xe3\x83\xa1\xe3\x82\xa4\xe3\x83\xb3"
     ".\xe3\x83\x86\xe3\x82\xb9\xe3\x83\x88</a>",
     "\xe3\x83\x89\xe3\x83\xa1\xe3\x82\xa4\xe3\x83\xb3[.]\xe3\x83\x86\xe3\x82\xb9\xe3\x83\x88 "
     "[hxxps://xn--eckwd4c7c[.]xn--zckzah/]\n"},
    {"homograph shows punycode", EN, "<a href=\"https://xn--pypal-4ve.com/\">paypal.com</a>",
     "paypal[.]com [hxxps://xn--pypal-4ve[.]com/]\n"
     "\xe2\x9a\xa0 Warning: the link text shows paypal[.]com but the link goes to "
     "xn--pypal-4ve[.]com\n"},
    {"split text still checked", EN, "<a href=\"https://evil.example/\">www.pay<b>pal</b>.com<br></a>",
     "www.paypal.com\n[hxxps://evil[.]example/]\n"
     "\xe2\x9a\xa0 Warning: the link text shows www[.]paypal[.]com but the link goes to evil[.]example\n"},
    {"image alt names the host", EN,
     "<a href=\"https://evil.example/\"><img src=x alt=\"www.paypal.com\"></a> "
     "<a href=\"https://evil.example/\"><img src=x alt=\"PayPal\"></a>",
     "[image: www[.]paypal[.]com] [hxxps://evil[.]example/]\n"
     "\xe2\x9a\xa0 Warning: the link text shows www[.]paypal[.]com but the link goes to evil[.]example\n"
     "[image: PayPal] [hxxps://evil[.]example/]\n"},
    {"block inside link", EN, "<a href=\"https://evil.example/\"><div>www.paypal.com</div></a>after",
     "www[.]paypal[.]com [hxxps://evil[.]example/]\n"
     "\xe2\x9a\xa0 Warning: the link text shows www[.]paypal[.]com but the link goes to evil[.]example\n"
     "after\n"},
    {"no check for words", EN, "<a href=\"https://evil.example/\">Click here.</a> "
                               "<a href=\"https://evil.example/\">report.pdf</a> "
                               "<a href=\"https://evil.example/\">v1.2</a>",
     "Click here. [hxxps://evil[.]example/] report.pdf [hxxps://evil[.]example/] "
     "v1.2 [hxxps://evil[.]example/]\n"},
    {"no check for non web href", EN, "<a href=\"javascript:x\">www.paypal.com</a>",
     "www[.]paypal[.]com [link: javascript (disabled)]\n"},
    {"link in list and table", EN,
     "<ul><li><a href=\"https://a.example/\">a.example</a></li></ul>"
     "<table><tr><td><a href=\"https://b.example/\">B</a></td><td>c</td></tr></table>",
     "\xe3\x83\xbb hxxps://a[.]example/\nB [hxxps://b[.]example/] | c\n"},

    /* --- broken HTML --- */
    {"unclosed tags", 0, "<p>one<p>two<div>three<b>bold<i>both</p>after", "one\n\ntwo\n\nthreeboldbothafter\n"},
    {"stray end tags", 0, "</div></p>a</b></i>b</table>c", "abc\n"},
    {"unterminated comment", 0, "a<!-- never closed <p>b</p>", "a\n"},
    {"unquoted and odd attributes", 0, "<a href=https://x.example/a?b=c&d=e title='t>x'>l</a>",
     "l [hxxps://x[.]example/a?b=c&d=e]\n"},
    {"lt in text", 0, "<p>1 < 2 and 3 > 2 <> & ; &</p>", "1 < 2 and 3 > 2 <> & ; &\n"},
    {"meta charset ignored", 0,
     "<meta charset=\"shift_jis\"><meta http-equiv=Content-Type content=\"text/html; charset=euc-jp\">"
     "<p>\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e</p>",
     "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\n"},
    {"invalid utf8 replaced", 0, "<p>ok \xff\xfe caf\xc3\xa9 \xe6\x97</p><p>\xe6\x97\xa5</p>",
     "ok \xef\xbf\xbd\xef\xbf\xbd caf\xc3\xa9 \xef\xbf\xbd\xef\xbf\xbd\n\n\xe6\x97\xa5\n"},
    {"controls dropped", 0, "<p>a\x01\x02\x7f" "b\xc2\x85" "c</p>", "abc\n"},
    {"control references dropped", 0, "<p>a&#1;b&#x85;c&#0;d</p>", "abcd\n"},
    {"bom", 0, "\xef\xbb\xbf<p>x</p>", "x\n"},
    {"xhtml", 0, "<?xml version=\"1.0\"?><!DOCTYPE html><html xmlns=\"http://www.w3.org/1999/xhtml\">"
                 "<body><p>x<br />y</p></body></html>",
     "x\ny\n"},
    {"cdata in html", 0, "a<![CDATA[b]]>c", "a<![CDATA[b]]>c\n"},
};

static char *render(const char *html, size_t n, int flags, htmltext_stats *st, int *rc)
{
    htmltext_opts o = {(flags & PLAIN) ? 0 : 1, (flags & EN) ? 1 : 0, 0};
    buf out;
    buf_init(&out, 1 << 24);
    *rc = htmltext_render(html, n, &o, &out, st);
    return buf_steal(&out, NULL);
}

static void test_table(void)
{
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct tcase *c = &cases[i];
        htmltext_stats st;
        int rc;
        char *got = render(c->html, strlen(c->html), c->flags, &st, &rc);
        CHECK_INT(rc, 0);
        if (strcmp(got, c->text) != 0)
            fprintf(stderr, "case \"%s\":\n", c->name);
        CHECK_STR(got, c->text);
        free(got);
    }
}

static void test_stats(void)
{
    const char *html =
        "<html><head><title>t</title><style>x</style><script>y</script></head><body>"
        "<a href=\"https://evil.example/\">www.bank.example</a>"
        "<a href=\"https://ok.example/\">ok.example</a><a name=x>n</a><a href=\"#\">f</a>"
        "<img src=a><img src=b alt=b><img src=c width=1 height=1>"
        "<iframe></iframe><form><input></form><div style=\"display:none\">h</div>"
        "</body></html>";
    htmltext_stats st;
    int rc;
    char *got = render(html, strlen(html), 0, &st, &rc);
    CHECK_INT(rc, 0);
    CHECK_INT(st.links, 3);
    CHECK_INT(st.link_mismatch, 1);
    CHECK_INT(st.images, 3);
    CHECK_INT(st.dropped, 5); /* style, script, iframe, form, hidden div */
    CHECK_INT(st.flattened, 0);
    CHECK_INT(st.restarts, 0);
    free(got);

    /* NULL stats and NULL opts (defaults: defang, Japanese) */
    buf out;
    buf_init(&out, 1024);
    CHECK_INT(htmltext_render("<a href=\"http://a.example/\">x</a>", 33, NULL, &out, NULL), 0);
    CHECK_STR(buf_cstr(&out), "x [hxxp://a[.]example/]\n");
    /* appends to what out already holds */
    CHECK_INT(htmltext_render("<p>y</p>", 8, NULL, &out, NULL), 0);
    CHECK_STR(buf_cstr(&out), "x [hxxp://a[.]example/]\ny\n");
    buf_free(&out);
    CHECK_INT(htmltext_render(NULL, 1, NULL, &out, NULL), -EINVAL);
    CHECK_INT(htmltext_render("x", 1, NULL, NULL, NULL), -EINVAL);
    CHECK_INT(htmltext_render(NULL, 0, NULL, &out, NULL), 0);
    buf_free(&out);
}

static void test_nospace(void)
{
    const char *html = "<p>0123456789</p><p>abcdefghij</p><p>\xe6\x97\xa5\xe6\x9c\xac</p>";
    for (size_t max = 0; max < 40; max++) {
        buf out;
        buf_init(&out, max);
        int rc = htmltext_render(html, strlen(html), NULL, &out, NULL);
        const char *full = "0123456789\n\nabcdefghij\n\n\xe6\x97\xa5\xe6\x9c\xac\n";
        if (max >= strlen(full)) {
            CHECK_INT(rc, 0);
            CHECK_STR(buf_cstr(&out), full);
        } else {
            CHECK_INT(rc, -ENOSPC);
            CHECK_INT(out.err, -ENOSPC);
            CHECK(out.len <= max);
            CHECK(strncmp(buf_cstr(&out), full, out.len) == 0);
        }
        buf_free(&out);
    }
    /* a line longer than the whole maximum */
    char big[5000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    buf out;
    buf_init(&out, 100);
    CHECK_INT(htmltext_render(big, strlen(big), NULL, &out, NULL), -ENOSPC);
    CHECK_INT(out.len, 100);
    buf_free(&out);
}

static char *repeat(const char *a, size_t na, const char *mid, const char *b, size_t nb)
{
    size_t la = strlen(a), lm = strlen(mid), lb = strlen(b);
    char *s = malloc(la * na + lm + lb * nb + 1), *q = s;
    for (size_t i = 0; i < na; i++, q += la)
        memcpy(q, a, la);
    memcpy(q, mid, lm);
    q += lm;
    for (size_t i = 0; i < nb; i++, q += lb)
        memcpy(q, b, lb);
    *q = 0;
    return s;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_deep(void)
{
    htmltext_stats st;
    int rc;
    /* 10,000 levels: nothing after the deep part may be lost */
    char *html = repeat("<div>", 10000,
                        "deep<br>text<script>bad()</script>"
                        "<a href=\"https://evil.example/\">www.paypal.com</a>",
                        "</div>", 10000);
    size_t n = strlen(html);
    html = realloc(html, n + 32);
    strcpy(html + n, "<p>after</p>");
    char *got = render(html, strlen(html), EN, &st, &rc);
    CHECK_INT(rc, 0);
    CHECK_HAS(got, "deep\ntext");
    CHECK_HAS(got, "www[.]paypal[.]com [hxxps://evil[.]example/]\n"
                   "\xe2\x9a\xa0 Warning: the link text shows www[.]paypal[.]com");
    CHECK_HAS(got, "\n\nafter\n");
    CHECK(strstr(got, "bad()") == NULL);
    CHECK(st.flattened > 0);
    CHECK(st.restarts > 0);
    CHECK_INT(st.link_mismatch, 1);
    free(got);
    free(html);

    /* just past max_depth: flattened, not lost; dropped content stays dropped */
    html = repeat("<span>", 150, "<table><tr><td>a</td><td>b</td></tr></table>x<style>s</style>y"
                                 "<img alt=i>", "</span>", 150);
    htmltext_opts o = {1, 1, 100};
    buf out;
    buf_init(&out, 1 << 20);
    CHECK_INT(htmltext_render(html, strlen(html), &o, &out, &st), 0);
    CHECK_STR(buf_cstr(&out), "a bxy[image: i]\n");
    CHECK(st.flattened > 0);
    CHECK_INT(st.restarts, 0);
    CHECK_INT(st.images, 1);
    buf_free(&out);
    free(html);

    /* the parse restarts past 256 open elements: text keeps its order */
    html = repeat("<span>", 300, "mid<b>dle</b>", "</span>", 300);
    n = strlen(html);
    char *h2 = malloc(n + 32);
    strcpy(h2, "start");
    strcat(h2, html);
    strcat(h2, "<p>end</p>");
    got = render(h2, strlen(h2), 0, &st, &rc);
    CHECK_INT(rc, 0);
    CHECK_STR(got, "start\n\nmiddle\n\nend\n");
    CHECK_INT(st.restarts, 1);
    free(got);
    free(h2);
    free(html);

    /* a small max_depth */
    html = repeat("<div>", 20, "<p>a</p><table><tr><td>b</td><td>c</td></tr></table>"
                                "<a href=\"http://x.example/\">x.example</a>", "</div>", 20);
    htmltext_opts o8 = {1, 0, 8};
    buf_init(&out, 1 << 20);
    CHECK_INT(htmltext_render(html, strlen(html), &o8, &out, &st), 0);
    CHECK_STR(buf_cstr(&out), "a\nb chxxp://x[.]example/\n"); /* flat: ends of elements are lost */
    CHECK(st.flattened > 0);
    buf_free(&out);
    free(html);

    /* many unclosed elements and mismatched end tags: linear, not quadratic */
    html = repeat("<b>", 100000, "x", "</i>", 100000);
    double t0 = now();
    got = render(html, strlen(html), 0, &st, &rc);
    double dt = now() - t0;
    CHECK_INT(rc, 0);
    CHECK_STR(got, "x\n");
    CHECK(dt < 10.0); /* quadratic would take minutes; generous for sanitizers */
    free(got);
    free(html);
    html = repeat("<span><div>", 50000, "y", "</span>", 100000);
    t0 = now();
    got = render(html, strlen(html), 0, &st, &rc);
    dt = now() - t0;
    CHECK_INT(rc, 0);
    CHECK_STR(got, "y\n");
    CHECK(dt < 10.0); /* quadratic would take minutes; generous for sanitizers */
    free(got);
    free(html);

    /* deep lists and quotes */
    html = repeat("<blockquote>", 300, "q", "</blockquote>", 300);
    got = render(html, strlen(html), 0, &st, &rc);
    CHECK_INT(rc, 0);
    CHECK(strlen(got) > 50 && strstr(got, "> > q\n") != NULL);
    free(got);
    free(html);
    html = repeat("<ul><li>", 5000, "item", "</li></ul>", 5000);
    got = render(html, strlen(html), 0, &st, &rc);
    CHECK_INT(rc, 0);
    CHECK_HAS(got, "item\n");
    free(got);
    free(html);
}

static void test_huge(void)
{
    htmltext_stats st;
    int rc;
    /* a 1 MB href: shown, cut after 2048 bytes of path, host whole */
    size_t big = 1 << 20;
    char *html = malloc(big + 200);
    strcpy(html, "<a href=\"https://host.example/");
    size_t k = strlen(html);
    memset(html + k, 'a', big);
    strcpy(html + k + big, "\" title=\"t\">www.host.example</a>");
    char *got = render(html, strlen(html), EN, &st, &rc);
    CHECK_INT(rc, 0);
    CHECK_HAS(got, "www[.]host[.]example [hxxps://host[.]example/aaaa");
    CHECK_HAS(got, "aaa\xe2\x80\xa6]\n");
    CHECK(strlen(got) < 3000);
    CHECK_INT(st.link_mismatch, 0);
    free(got);
    /* a 1 MB alt and a 1 MB style attribute */
    strcpy(html, "<img alt=\"");
    k = strlen(html);
    memset(html + k, 'b', big);
    strcpy(html + k + big, "\">");
    got = render(html, strlen(html), EN, &st, &rc);
    CHECK_INT(rc, 0);
    CHECK_INT(strlen(got), big + 10);
    free(got);
    strcpy(html, "<div style=\"");
    k = strlen(html);
    memset(html + k, ';', big);
    strcpy(html + k + big, "display:none\">x</div>y");
    got = render(html, strlen(html), EN, &st, &rc);
    CHECK_INT(rc, 0);
    CHECK_STR(got, "y\n");
    free(got);
    /* 12 MB of text in one node (libxml2's 10 MB text-node limit) */
    free(html);
    size_t tn = 12u << 20;
    html = malloc(tn + 32);
    strcpy(html, "<p>");
    memset(html + 3, 'z', tn);
    strcpy(html + 3 + tn, "</p><p>end</p>");
    buf out;
    buf_init(&out, 64u << 20);
    CHECK_INT(htmltext_render(html, strlen(html), NULL, &out, &st), 0);
    CHECK_INT(out.len, tn + 1 + 1 + 4);
    CHECK(out.len > 5 && memcmp(out.p + out.len - 5, "\nend\n", 5) == 0);
    buf_free(&out);
    free(html);
    /* NUL bytes inside: the rest is not lost */
    static const char nul[] = "<p>a\0b</p>\0<p>c</p>";
    got = render(nul, sizeof nul - 1, 0, &st, &rc);
    CHECK_INT(rc, 0);
    CHECK_STR(got, "ab\n\nc\n");
    free(got);
}

static void test_outlook(void)
{
    const char *html =
        "<html xmlns:v=\"urn:schemas-microsoft-com:vml\" "
        "xmlns:o=\"urn:schemas-microsoft-com:office:office\" "
        "xmlns:w=\"urn:schemas-microsoft-com:office:word\" xmlns=\"http://www.w3.org/TR/REC-html40\">"
        "<head><meta http-equiv=Content-Type content=\"text/html; charset=iso-2022-jp\">"
        "<meta name=Generator content=\"Microsoft Word 15 (filtered medium)\">"
        "<style><!--\np.MsoNormal {margin:0mm;}\n--></style><!--[if gte mso 9]><xml>\n"
        "<o:shapedefaults v:ext=\"edit\" spidmax=\"1026\" />\n</xml><![endif]--></head>\n"
        "<body lang=JA link=\"#0563C1\" vlink=\"#954F72\">\n<div class=WordSection1>\n"
        "<p class=MsoNormal>\xe7\xb7\x8f\xe5\x8b\x99\xe8\xaa\xb2<span lang=EN-US> </span>"
        "\xe5\x90\x84\xe4\xbd\x8d<span lang=EN-US><o:p></o:p></span></p>\n"
        "<p class=MsoNormal><span lang=EN-US><o:p>&nbsp;</o:p></span></p>\n"
        "<p class=MsoNormal>Line one.<span lang=EN-US><o:p></o:p></span></p>\n"
        "<p class=MsoNormal>Line two.<o:p></o:p></p>\n"
        "<p class=MsoNormal><o:p>&nbsp;</o:p></p>\n<p class=MsoNormal><o:p>&nbsp;</o:p></p>\n"
        "<p class=MsoListParagraph style='margin-left:18.0pt;mso-list:l0 level1 lfo1'>"
        "<![if !supportLists]><span lang=EN-US><span style='mso-list:Ignore'>1.<span "
        "style='font:7.0pt \"Times New Roman\"'>&nbsp;&nbsp; </span></span></span><![endif]>"
        "Date<o:p></o:p></p>\n"
        "<p class=MsoListParagraph style='margin-left:18.0pt;mso-list:l0 level1 lfo1'>"
        "<![if !supportLists]><span>2.<span>&nbsp;&nbsp; </span></span><![endif]>Place<o:p></o:p></p>\n"
        "<table class=MsoTableGrid border=1 cellspacing=0 cellpadding=0>\n"
        "<tr><td width=100 valign=top><p class=MsoNormal>Item<o:p></o:p></p></td>\n"
        "<td width=100 valign=top><p class=MsoNormal>Cost<o:p></o:p></p></td></tr>\n"
        "<tr><td><p class=MsoNormal>Paper<o:p></o:p></p></td><td><p class=MsoNormal>1,000"
        "<o:p></o:p></p></td></tr>\n</table>\n"
        "<p class=MsoNormal>See: <a href=\"https://www.city.example.lg.jp/k/\">"
        "https://www.city.example.lg.jp/k/</a><o:p></o:p></p>\n"
        "<!--[if gte vml 1]><v:shape id=\"x\"><v:imagedata src=\"a.png\"/></v:shape><![endif]-->"
        "<![if !vml]><img width=10 height=10 src=\"a.png\" alt=\"stamp\" v:shapes=\"x\"><![endif]>\n"
        "<div style='border:none;border-top:solid #E1E1E1 1.0pt;padding:3.0pt 0mm 0mm 0mm'>\n"
        "<p class=MsoNormal><b><span lang=EN-US>From:</span></b><span lang=EN-US> Suzuki "
        "&lt;suzuki@example.jp&gt; <br><b>Sent:</b> Monday<o:p></o:p></span></p></div>\n"
        "</div></body></html>\n";
    htmltext_stats st;
    int rc;
    char *got = render(html, strlen(html), 0, &st, &rc);
    CHECK_INT(rc, 0);
    CHECK_STR(got, "\xe7\xb7\x8f\xe5\x8b\x99\xe8\xaa\xb2 \xe5\x90\x84\xe4\xbd\x8d\n\n"
                   "Line one.\nLine two.\n\n1.   Date\n2.   Place\nItem | Cost\nPaper | 1,000\n"
                   "See: hxxps://www[.]city[.]example[.]lg[.]jp/k/\n"
                   "[\xe7\x94\xbb\xe5\x83\x8f: stamp]\nFrom: Suzuki <suzuki@example.jp>\nSent: Monday\n");
    CHECK_INT(st.dropped, 1);
    CHECK_INT(st.links, 1);
    free(got);
}

static void test_newsletter(void)
{
    /* nested layout tables, preheader, spacer images, tracking pixel, footer */
    const char *html =
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Weekly</title>"
        "<style>@media only screen{.x{width:100%}}</style></head><body style=\"margin:0\">"
        "<div style=\"display:none;font-size:1px;max-height:0\">Preview text&nbsp;&zwnj;</div>"
        "<table width=\"100%\" cellpadding=0 cellspacing=0><tr><td align=center>"
        "<table width=600><tr><td><img src=\"https://n.example/logo.png\" alt=\"Weekly News\" "
        "width=200 height=50></td><td align=right><a href=\"https://n.example/web\">View in browser</a>"
        "</td></tr>"
        "<tr><td colspan=2><h1 style=\"margin:0\">Top story</h1>"
        "<p style=\"margin:0 0 10px\">Something happened.&nbsp;Read on.</p>"
        "<table><tr><td style=\"background:#06c\"><a href=\"https://click.n.example/t?id=1&amp;u=2\" "
        "style=\"color:#fff\">Read more &rarr;</a></td></tr></table></td></tr>"
        "<tr><td colspan=2><img src=\"s.gif\" width=1 height=10 alt=\"\"></td></tr>"
        "<tr><td colspan=2><ul><li>Item one</li><li>Item two</li></ul></td></tr>"
        "<tr><td colspan=2 style=\"font-size:11px\">You received this because you subscribed. "
        "<a href=\"https://n.example/unsub?e=a%40b.example\">Unsubscribe</a> | "
        "<a href=\"https://n.example/prefs\">Preferences</a><br>&copy; 2026 News Inc.</td></tr>"
        "</table></td></tr></table><img src=\"https://t.example/o.gif\" width=\"1\" height=\"1\" "
        "alt=\"\"></body></html>";
    htmltext_stats st;
    int rc;
    char *got = render(html, strlen(html), 0, &st, &rc);
    CHECK_INT(rc, 0);
    CHECK_STR(got,
              "[\xe7\x94\xbb\xe5\x83\x8f: Weekly News] | View in browser [hxxps://n[.]example/web]\n"
              "Top story\n\nSomething happened. Read on.\n"
              "Read more \xe2\x86\x92 [hxxps://click[.]n[.]example/t?id=1&u=2]\n"
              "[\xe7\x94\xbb\xe5\x83\x8f]\n"
              "\xe3\x83\xbb Item one\n\xe3\x83\xbb Item two\n"
              "You received this because you subscribed. Unsubscribe "
              "[hxxps://n[.]example/unsub?e=a%40b.example] | Preferences [hxxps://n[.]example/prefs]\n"
              "\xc2\xa9 2026 News Inc.\n");
    CHECK_INT(st.links, 4);
    CHECK_INT(st.images, 3);
    CHECK_INT(st.dropped, 2);
    free(got);
}

static void test_gmail(void)
{
    const char *html =
        "<div dir=\"ltr\"><div>\xe5\xb1\xb1\xe7\x94\xb0\xe6\xa7\x98</div><div><br></div>"
        "<div>Thank you.</div><div>Attached.<br></div><div><br></div><div>Regards</div>"
        "<div><br></div><div class=\"gmail_quote\"><div dir=\"ltr\" class=\"gmail_attr\">"
        "On Fri, Suzuki &lt;<a href=\"mailto:suzuki@example.jp\">suzuki@example.jp</a>&gt; wrote:"
        "<br></div><blockquote class=\"gmail_quote\" style=\"margin:0px 0px 0px 0.8ex;"
        "border-left:1px solid rgb(204,204,204);padding-left:1ex\"><div dir=\"ltr\">Please send."
        "<div><br></div><div>Suzuki</div></div>\n</blockquote></div></div>";
    htmltext_stats st;
    int rc;
    char *got = render(html, strlen(html), 0, &st, &rc);
    CHECK_INT(rc, 0);
    CHECK_STR(got, "\xe5\xb1\xb1\xe7\x94\xb0\xe6\xa7\x98\n\nThank you.\nAttached.\n\nRegards\n\n"
                   "On Fri, Suzuki <suzuki@example[.]jp> wrote:\n> Please send.\n>\n> Suzuki\n");
    CHECK_INT(st.links, 1);
    CHECK_INT(st.link_mismatch, 0);
    free(got);
}

static void test_defang_text(void)
{
    static const struct {
        const char *in, *out;
    } t[] = {
        {"see https://bank.example.jp/login now", "see hxxps://bank[.]example[.]jp/login now"},
        {"HTTP://A.B/c", "hxxp://A[.]B/c"},
        {"ftp://files.example.org/x.zip", "fxp://files[.]example[.]org/x.zip"}, /* path dots stay */
        {"www.example.com.", "www[.]example[.]com."},
        {"(www.example.com)です", "(www[.]example[.]com)です"},
        {"https://user@evil.example/", "hxxps://user@evil[.]example/"},
        {"https://example.com:8080/p", "hxxps://example[.]com:8080/p"},
        {"already hxxps://a[.]b/ shown", "already hxxps://a[.]b/ shown"},
        {"xhttps://a.b", "xhttps://a.b"},
        {"awww.example.com", "awww.example.com"},
        {"www.", "www."},
        {"http://", "hxxp://"},
        {"日本語 https://例え.jp/ 日本語", "日本語 hxxps://例え.jp/ 日本語"},
        {"", ""},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        buf b;
        buf_init(&b, 1024);
        CHECK_INT(htmltext_defang_text(t[i].in, strlen(t[i].in), &b), 0);
        CHECK_STR(buf_cstr(&b), t[i].out);
        buf_free(&b);
    }
    /* bounded output */
    buf b;
    buf_init(&b, 10);
    CHECK_INT(htmltext_defang_text("https://a.b.c.d/", 16, &b), -ENOSPC);
    buf_free(&b);
}

int main(void)
{
    test_defang_text();
    test_table();
    test_stats();
    test_nospace();
    test_deep();
    test_huge();
    test_outlook();
    test_newsletter();
    test_gmail();
    TEST_DONE();
}
