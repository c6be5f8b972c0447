"""parse_message on curated real messages (tests/data/mime, see its README for sources)."""

from __future__ import annotations

from pathlib import Path

from mailtide.mail import Attachment, ParsedMessage, parse_message, snippet_of

DATA = Path(__file__).resolve().parents[1] / "data" / "mime"


def parse(name: str) -> ParsedMessage:
    return parse_message((DATA / name).read_bytes())


def test_rfc2047_gb2312_subject_and_name_with_mislabelled_body():
    parsed = parse("spamscope--mail_test_12.eml")
    assert parsed.subject == "代开各地增值税发票"
    assert parsed.from_addr == "张先生 <baoguan@hotmail.com>"
    assert parsed.to_addrs == "danglüe@email.com"  # raw UTF-8 bytes in the header
    assert parsed.body_text is not None and parsed.body_text.startswith("你好！我公司可代开各类增值税发票")
    # declared gb2312 but the bytes are UTF-8: decoded right, and the mismatch is reported
    assert parsed.parse_error == "plain body: text is not valid gb2312; decoded as utf-8"


def test_iso_2022_jp_subject_display_name_and_body():
    parsed = parse("ruby-mail--japanese_iso_2022.eml")
    assert parsed.subject == "まみむめも"
    assert parsed.to_addrs == "みける <raasdnil@gmail.com>"
    assert parsed.from_addr == "Mikel Lindsaar <raasdnil@gmail.com>"
    assert parsed.body_text == "すみません。\n\n"
    assert parsed.parse_error is None


def test_charset_alias_ks_c_5601_1987():
    parsed = parse("ruby-mail--ks_c_5601-1987.eml")
    assert parsed.body_text == "스티해\n"
    assert parsed.date_header == "Wed, 28 May 2014 17:18:19 +0900 (JST)"
    assert parsed.message_id_header == "<from@example.com>"


def test_encoded_display_name_with_comma_is_quoted():
    parsed = parse("spamscope--mail_test_18.eml")
    assert parsed.from_addr == '"LastßlName, FirstName" <comma.name@example.com>'
    assert parsed.to_addrs == '"tony.stark@example.com" <tony.stark@example.com>'
    assert parsed.cc_addrs == 'simple@example.net, "John \\"Johnny\\" Doe" <john.doe@example.com>'
    assert parsed.message_id_header is None
    assert parsed.parse_error is None


def test_quoted_names_with_specials():
    parsed = parse("ruby-mail--rfc2822-example03.eml")
    assert parsed.from_addr == '"Joe Q. Public" <john.q.public@example.com>'
    assert parsed.to_addrs == "Mary Smith <mary@x.test>, jdoe@example.org, Who? <one@y.test>"
    assert parsed.cc_addrs == 'boss@nil.test, "Giant; \\"Big\\" Box" <sysservices@example.net>'
    assert parsed.subject is None


def test_group_syntax_and_empty_group():
    parsed = parse("ruby-mail--rfc2822-example04.eml")
    assert parsed.to_addrs == "A Group: Chris Jones <c@a.test>, joe@where.test, John <jdoe@one.test>;"
    assert parsed.cc_addrs == "Undisclosed recipients:;"
    assert parsed.bcc_addrs is None
    assert parsed.parse_error is None


def test_rfc6532_utf8_headers():
    parsed = parse("ruby-mail--utf8_headers.eml")
    assert parsed.subject == "Säying Hello"
    assert parsed.from_addr == "Jöhn Doe <jdöe@mächine.example>"
    assert parsed.to_addrs == "Märy Smith <märy@exämple.net>"
    assert parsed.parse_error is None


def test_raw_latin1_header_bytes():
    parsed = parse("ruby-mail--invalid_subject_characters.eml")
    assert parsed.subject == "Formação FrenetikPolis: Mega Campanha Final Verão | Cursos de Setembro"
    assert parsed.from_addr == '"Formação Frenetikpolis" <info@formacaofrenetik.info>'
    assert parsed.to_addrs == "martin@internet.ao, iris@internet.ao, support@maxnet.ao"


def test_broken_utf8_headers_and_missing_boundary():
    parsed = parse("flanker--mailformed-headers.eml")
    # UTF-8 cut by a stray byte stays UTF-8, with one replacement character
    assert parsed.from_addr == "Юникод запрещен\ufffd <headers@gmail.com>"
    assert parsed.subject == "´!"
    assert parsed.to_addrs == "´google@example.com"
    # the declared boundary never appears: the text is kept as the body, and the defect is reported
    assert parsed.body_text is not None and "Hello" in parsed.body_text
    assert parsed.parse_error is not None and "StartBoundaryNotFoundDefect" in parsed.parse_error


def test_multipart_without_boundary_keeps_text():
    parsed = parse("cpython--msg_41.eml")
    assert parsed.subject == "64423"
    assert parsed.body_text == "Blah blah blah\n"
    assert parsed.body_html is None
    assert parsed.parse_error is not None and "NoBoundaryInMultipartDefect" in parsed.parse_error


def test_unknown_charset_falls_back():
    parsed = parse("ruby-mail--raw_email10.eml")
    assert parsed.body_text is not None
    assert "Envoyé par le service de messagerie texte de Bell Mobilité" in parsed.body_text
    assert parsed.parse_error is None  # X-UNKNOWN promises nothing, so no complaint


def test_nested_alternative_picks_first_plain_and_html():
    parsed = parse("nodemailer--nested.eml")
    assert parsed.body_text == "\nDear Sir,\n\nGood evening.\n\n\n \n\n"
    assert parsed.body_html == "<p>Dear Sir</p>\n<p>Good evening.</p>\n<p></p>"
    assert parsed.attachments == ()  # the footer alternative is text, not an attachment
    assert snippet_of(parsed) == "Dear Sir, Good evening."


def test_related_images_and_rfc2231_utf8_filename():
    parsed = parse("nodemailer--nodemailer.eml")
    assert parsed.subject == "Nodemailer is unicode friendly ✔ (1476358788189)"
    assert parsed.to_addrs == "Andris Reinman <andris+123@kreata.ee>, andris.reinman@gmail.com"
    assert parsed.body_text == "Hello to myself!"
    assert parsed.body_html is not None and parsed.body_html.startswith("<p><b>Hello</b> to myself")
    assert parsed.attachments == (
        Attachment("image.png", "image/png", 126, "note@example.com", False, "1.3.2"),
        Attachment("nyan cat ✔.gif", "image/gif", 29361, "nyan@example.com", False, "1.3.3"),
        Attachment("notes.txt", "text/plain", 28, None, False, "2"),
    )


def test_message_rfc822_attachment_and_its_parts():
    parsed = parse("ruby-mail--attachment_message_rfc822.eml")
    assert parsed.body_text == "This is the first part.\n"
    forwarded, inner_pdf = parsed.attachments
    assert forwarded.content_type == "message/rfc822"
    assert forwarded.filename == "ForwardedMessage.eml"
    assert forwarded.part_path == "2"
    assert inner_pdf == Attachment("broken.pdf", "application/pdf", 1026, None, False, "2.2")
    assert forwarded.size >= inner_pdf.size


def test_rfc2231_continued_utf8_filename():
    parsed = parse("ruby-mail--japanese_attachment_long_name.eml")
    assert parsed.subject == "まみむめも" * 10
    (attachment,) = parsed.attachments
    assert attachment.filename == "かきくけこ" * 5 + ".txt"
    assert attachment.content_type == "text/plain"
    assert attachment.inline is False
    assert parsed.body_text is None


def test_rfc2231_latin1_filename_inline():
    parsed = parse("ruby-mail--attachment_with_quoted_filename.eml")
    assert parsed.subject == "Eelanalüüsi päring"
    (attachment,) = parsed.attachments
    assert attachment == Attachment("Eelanalüüsi päring.jpg", "image/jpeg", 1952, None, True, "1")


def test_filename_in_wrong_charset_is_decoded_with_replacement():
    parsed = parse("ruby-mail--attachment_with_encoded_name.eml")
    (attachment,) = parsed.attachments
    assert attachment.filename == "01 Quien Te Dij\ufffdat. Pitbull.mp3"
    assert attachment.content_type == "application/octet-stream"
    assert attachment.size == 399


def test_rfc2046_example_broken_base64_and_paths():
    parsed = parse("stalwart--rfc-000.eml")
    assert parsed.subject == "A multipart example"
    assert parsed.body_text is not None and parsed.body_text.startswith("... Some text appears here ...")
    assert [(a.part_path, a.content_type) for a in parsed.attachments] == [
        ("3.1", "audio/basic"),
        ("3.2", "image/jpeg"),
        ("5", "message/rfc822"),
    ]
    assert parsed.parse_error is not None
    assert "part 3.1: InvalidBase64CharactersDefect" in parsed.parse_error
    assert "part 3.2: InvalidBase64PaddingDefect" in parsed.parse_error


def test_headers_keep_order_and_decode():
    parsed = parse("ruby-mail--japanese_iso_2022.eml")
    assert parsed.headers == (
        ("MIME-Version", "1.0"),
        ("Subject", "まみむめも"),
        ("From", "Mikel Lindsaar <raasdnil@gmail.com>"),
        ("To", "みける <raasdnil@gmail.com>"),
        ("Content-Type", "text/plain; charset=iso-2022-jp"),
        ("Content-Transfer-Encoding", "7bit"),
    )


def test_every_curated_file_is_listed_in_the_readme():
    readme = (DATA / "README.md").read_text()
    files = sorted(path.name for path in DATA.glob("*.eml"))
    assert len(files) >= 15
    assert [name for name in files if f"| {name} |" not in readme] == []
